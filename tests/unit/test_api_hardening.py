"""The API's edges: request body limit (413), Allow on 405, offline /docs, /readyz's 503 in the
OpenAPI document. Built on create_app with stand-in services (settings, metrics and what /readyz
reads): nothing here needs the store, the auth or the search, so rewrites of those leave it be."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from services.api.app import create_app
from services.api.bodylimit import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from services.api.metrics import ApiMetrics
from services.api.probes import Readiness
from shared.metrics import ServiceMetrics
from shared.settings import ApiSettings

LIMIT = 1000


class Payload(BaseModel):
    data: str


def stand_in(ready: bool = True) -> Any:
    """What create_app and the middleware read (settings, metrics), and what /readyz reads."""

    async def store() -> None:
        if not ready:
            raise ConnectionError("store unreachable")

    return SimpleNamespace(
        settings=ApiSettings(access_log=False),
        metrics=ApiMetrics(ServiceMetrics("api_hardening")),
        checks={"mongo": store},
    )


def build(**kw: Any) -> FastAPI:
    return create_app(stand_in(), **kw)


def app_with_probes(**kw: Any) -> tuple[FastAPI, list[int]]:
    """The real app plus two body-reading routes (raw and parsed by FastAPI) that record what
    they were given."""
    app = build(**kw)
    seen: list[int] = []

    @app.post("/probe/raw")
    async def raw(request: Request) -> dict[str, int]:
        body = await request.body()
        seen.append(len(body))
        return {"bytes": len(body)}

    @app.post("/probe/parsed")
    async def parsed(payload: Payload) -> dict[str, int]:
        seen.append(len(payload.data))
        return {"bytes": len(payload.data)}

    return app, seen


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


class Chunks:
    """A chunked request body (no Content-Length) that counts the chunks the server pulled."""

    def __init__(self, body: bytes, size: int = 100) -> None:
        self.body = body
        self.size = size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), self.size):
            self.pulled += 1
            yield self.body[i : i + self.size]


def json_body(total: int) -> bytes:
    """``{"data": "xxx..."}`` of ``total`` bytes (the string is ``total - 12`` long)."""
    return b'{"data": "' + b"x" * (total - 12) + b'"}'


def assert_too_large(got: httpx.Response, limit: int = LIMIT) -> None:
    assert got.status_code == 413
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"error": f"Request body larger than {limit} bytes"}
    assert got.headers["connection"] == "close"


# ---------------------------------------------------------------------------- body limit


@pytest.mark.parametrize("path", ["/probe/raw", "/probe/parsed"])
async def test_a_declared_length_over_the_limit_is_refused_before_the_handler(path: str) -> None:
    app, seen = app_with_probes(max_body_bytes=LIMIT)
    async with client(app) as http:
        got = await http.post(
            path, content=json_body(LIMIT + 1), headers={"Content-Type": "application/json"}
        )
    assert_too_large(got)
    assert got.headers["x-request-id"]  # the outer middleware still saw it
    assert seen == []


async def test_a_chunked_body_is_counted_and_stopped_at_the_limit() -> None:
    app, seen = app_with_probes(max_body_bytes=LIMIT)
    body = Chunks(b"x" * 300_000, size=300)
    async with client(app) as http:
        got = await http.post("/probe/raw", content=body)
    assert "content-length" not in got.request.headers
    assert_too_large(got)
    assert seen == []
    assert body.pulled == 4  # 1,200 bytes: the first read past the limit ends it


async def test_a_chunked_body_parsed_by_fastapi_is_413_not_400() -> None:
    app, seen = app_with_probes(max_body_bytes=LIMIT)
    async with client(app) as http:
        got = await http.post(
            "/probe/parsed",
            content=Chunks(json_body(LIMIT + 1)),
            headers={"Content-Type": "application/json"},
        )
    assert_too_large(got)
    assert seen == []


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_at_the_limit_goes_through(chunked: bool) -> None:
    app, seen = app_with_probes(max_body_bytes=LIMIT)
    async with client(app) as http:
        raw = await http.post(
            "/probe/raw", content=Chunks(b"x" * LIMIT) if chunked else b"x" * LIMIT
        )
        parsed = await http.post(
            "/probe/parsed",
            content=Chunks(json_body(LIMIT)) if chunked else json_body(LIMIT),
            headers={"Content-Type": "application/json"},
        )
    assert (raw.status_code, raw.json()) == (200, {"bytes": LIMIT})
    assert (parsed.status_code, parsed.json()) == (200, {"bytes": LIMIT - 12})
    assert seen == [LIMIT, LIMIT - 12]


async def test_the_default_limit_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_BODY_BYTES == 1024 * 1024
    app, _ = app_with_probes()
    async with client(app) as http:
        fits = await http.post("/probe/raw", content=b"x" * DEFAULT_MAX_BODY_BYTES)
        over = await http.post("/probe/raw", content=b"x" * (DEFAULT_MAX_BODY_BYTES + 1))
    assert fits.status_code == 200
    assert_too_large(over, DEFAULT_MAX_BODY_BYTES)


async def test_the_middleware_answers_itself_when_the_app_has_no_handler() -> None:
    """A bare ASGI app lets the limit's exception out: the middleware still answers 413."""
    reads = 0

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal reads
        while True:
            message = await receive()
            reads += 1
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    app = BodyLimitMiddleware(reader, max_bytes=LIMIT)
    async with client(app) as http:
        over = await http.post("/", content=Chunks(b"x" * 40_000, 400))
        assert reads == 2  # the third read (1,200 bytes) raised
        fits = await http.post("/", content=Chunks(b"x" * 800, 400))
    assert_too_large(over)
    assert (fits.status_code, fits.text) == (200, "read")


def test_a_negative_limit_is_refused() -> None:
    async def nothing(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="negative"):
        BodyLimitMiddleware(nothing, max_bytes=-1)


# ---------------------------------------------------------------------------- 405 and Allow


async def test_405_names_the_allowed_methods_of_every_documented_path() -> None:
    app = build()
    paths = app.openapi()["paths"]
    assert paths
    async with client(app) as http:
        for template, operations in paths.items():
            assert "patch" not in operations
            url = re.sub(r"\{[^}]+\}", "x", template)
            got = await http.patch(url)
            assert got.status_code == 405, template
            assert got.json() == {"error": "Method not allowed"}, template
            allowed = {m.strip() for m in got.headers["allow"].split(",")}
            assert allowed == {m.upper() for m in operations}, template


async def test_405_allow_lists_the_methods_of_every_route_on_the_path() -> None:
    """Starlette names only the first route that matched the path; one route per method
    would leave the others out."""
    app = build()

    @app.get("/probe/both")
    async def get_both() -> dict[str, str]:
        return {}

    @app.post("/probe/both")
    async def post_both() -> dict[str, str]:
        return {}

    async with client(app) as http:
        got = await http.delete("/probe/both")
    assert got.status_code == 405
    assert got.headers["allow"] == "GET, POST"
    assert got.json() == {"error": "Method not allowed"}


# ---------------------------------------------------------------------------- offline docs

_URL = re.compile(r"""(?:src|href)="([^"]+)"|url: '([^']+)'""")


async def fetch_page(http: httpx.AsyncClient, path: str) -> tuple[str, list[str]]:
    page = await http.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", page.text), "the page must not load anything remote"
    return page.text, [a or b for a, b in _URL.findall(page.text)]


async def test_swagger_ui_and_its_assets_come_from_the_service() -> None:
    app = build()
    async with client(app) as http:
        html, urls = await fetch_page(http, "/docs")
        assert "/openapi.json" in urls
        assert "SwaggerUIBundle(" in html
        kinds = {}
        for url in urls:
            if url == "/openapi.json":
                continue
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
            kinds[url.rsplit("/", 1)[1]] = asset.headers["content-type"]
            if url.endswith(".js"):
                assert "SwaggerUIBundle" in asset.text
        assert kinds == {
            "swagger-ui.css": "text/css; charset=utf-8",
            "favicon.png": "image/png",
            "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
        }
        spec = await http.get("/openapi.json")
        assert spec.status_code == 200
        # FastAPI's OAuth2 redirect page came with its CDN /docs; nothing uses it here.
        assert (await http.get("/docs/oauth2-redirect")).status_code == 404


async def test_redoc_is_offline_too() -> None:
    app = build()
    async with client(app) as http:
        html, urls = await fetch_page(http, "/redoc")
        assert "fonts.googleapis" not in html
        script = next(u for u in urls if u.endswith(".js"))
        got = await http.get(script)
    assert got.status_code == 200
    assert got.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "Redoc" in got.text


@pytest.mark.parametrize(
    "path", ["/docs/assets/nope.js", "/docs/assets/..%2F..%2F__init__.py", "/docs/assets/"]
)
async def test_only_the_listed_assets_are_served(path: str) -> None:
    app = build()
    async with client(app) as http:
        got = await http.get(path)
    assert got.status_code == 404
    assert "error" in got.json()


def test_the_docs_pages_stay_out_of_the_openapi_document() -> None:
    paths = build().openapi()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


# ---------------------------------------------------------------------------- /readyz


def test_readyz_documents_its_503_with_a_schema() -> None:
    spec = build().openapi()
    responses = spec["paths"]["/readyz"]["get"]["responses"]
    for status in ("200", "503"):
        content = responses[status]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Readiness"}, status
    schema = spec["components"]["schemas"]["Readiness"]
    assert set(schema["required"]) == {"status", "checks"}
    assert schema["properties"]["status"]["enum"] == ["ready", "not ready"]


@pytest.mark.parametrize(("ready", "status"), [(False, 503), (True, 200)])
async def test_readyz_answers_match_the_documented_schema(ready: bool, status: int) -> None:
    async with client(create_app(stand_in(ready))) as http:
        got = await http.get("/readyz")
    assert got.status_code == status
    report = Readiness.model_validate(got.json())
    assert report.status == ("ready" if ready else "not ready")
