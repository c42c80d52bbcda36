"""Composition root of the API: reads settings, wires checks and metrics, serves with uvicorn."""

from __future__ import annotations

import uvicorn

from services.api.app import create_app
from shared.logs import configure_logging
from shared.metrics import ServiceMetrics
from shared.service import kafka_check, mongo_check
from shared.settings import ApiSettings


def run() -> int:
    settings = ApiSettings()
    configure_logging("api", settings.log_level)
    app = create_app(
        ServiceMetrics("api"),
        {"kafka": kafka_check(settings.kafka), "mongo": mongo_check(settings.mongo)},
    )
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None)
    return 0
