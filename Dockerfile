# One image for all four services; docker-compose.yml picks the module to run.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MARQUEE_ENV=dev
COPY pyproject.toml requirements.lock ./
COPY shared ./shared
COPY services ./services
COPY deploy/__init__.py ./deploy/__init__.py
COPY deploy/sandbox ./deploy/sandbox
RUN pip install --no-cache-dir -c requirements.lock .
USER nobody
CMD ["python", "-m", "services.api"]
