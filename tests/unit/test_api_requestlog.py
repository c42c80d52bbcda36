"""The API's request context: X-Request-ID kept or minted, echoed, logged, seen by handlers."""

from __future__ import annotations

import io
import logging

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.api.requestlog import RequestContextMiddleware
from shared.logs import JsonFormatter, correlation_id


async def echo(request: Request) -> JSONResponse:
    logging.getLogger("handler").info("inside")
    return JSONResponse({"seen": correlation_id.get()})


async def boom(request: Request) -> JSONResponse:
    return JSONResponse({"error": "x"}, status_code=503)


def client(access_log: bool = True) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/echo", echo), Route("/boom", boom), Route("/healthz", echo)])
    wrapped = RequestContextMiddleware(app, access_log=access_log)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t")


async def test_a_usable_caller_id_is_kept_echoed_and_on_every_line() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)  # formats as each line is written, as in production
    handler.setFormatter(JsonFormatter("api"))
    loggers = [logging.getLogger(n) for n in ("handler", "marquee.access")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        async with client() as http:
            got = await http.get("/echo", headers={"X-Request-ID": "trace-1.a:b"})
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert got.json() == {"seen": "trace-1.a:b"}
    assert got.headers["x-request-id"] == "trace-1.a:b"
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["logger"], x["correlation_id"]) for x in lines] == [
        ("handler", "trace-1.a:b"),
        ("marquee.access", "trace-1.a:b"),
    ]
    assert (lines[1]["status"], lines[1]["path"], lines[1]["method"]) == (200, "/echo", "GET")
    assert lines[1]["duration_ms"] >= 0
    assert correlation_id.get() is None  # reset after the request


@pytest.mark.parametrize("given", [None, "has space", "x" * 129, 'quote"'])
async def test_an_absent_or_unusable_id_is_replaced_by_a_new_one(given: str | None) -> None:
    headers = {} if given is None else {"X-Request-ID": given}
    async with client() as http:
        first = await http.get("/echo", headers=headers)
        second = await http.get("/echo", headers=headers)
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2
    assert given not in ids
    assert first.json()["seen"] == first.headers["x-request-id"]


async def test_server_errors_log_as_warnings_probes_and_switched_off_logs_not_at_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="marquee.access")
    async with client() as http:
        await http.get("/boom")
        await http.get("/healthz")
    access = [r for r in caplog.records if r.name == "marquee.access"]
    assert [(r.levelname, r.getMessage()) for r in access] == [("WARNING", "GET /boom 503")]
    caplog.clear()
    async with client(access_log=False) as http:
        assert (await http.get("/echo")).headers["x-request-id"]
    assert [r for r in caplog.records if r.name == "marquee.access"] == []
