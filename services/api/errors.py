"""Error bodies in the seed's shape (``{"error": ...}``) and the handlers that produce them."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from services.api.catalogue import TooBroad

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client is told about: status, message, optional per-field details."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details
        self.retry_after = retry_after
        self.extra = extra or {}


def field_error(field: str, message: str, code: str = "invalid") -> dict[str, Any]:
    """One entry of ``details``: the FieldError contract's shape."""
    return {"field": field, "message": message, "code": code}


def bad_request(field: str, message: str, code: str = "invalid") -> ApiError:
    return ApiError(400, "Invalid request", details=[field_error(field, message, code)])


def not_found(what: str = "Event") -> ApiError:
    return ApiError(404, f"{what} not found")


def unavailable(reason: str, retry_after: float = 5.0) -> ApiError:
    return ApiError(503, reason, retry_after=retry_after)


def error_response(
    status: int,
    error: str,
    *,
    details: list[dict[str, Any]] | None = None,
    retry_after: float | None = None,
    extra: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": error}
    out_headers: dict[str, str] = {}
    if details:
        body["details"] = details
    if retry_after is not None:
        seconds = max(1, math.ceil(retry_after))
        body["retry_after"] = seconds
        out_headers["Retry-After"] = str(seconds)
    body.update(extra or {})
    if status == 401:
        out_headers["WWW-Authenticate"] = "Bearer"
    out_headers.update(headers or {})
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=out_headers
    )


def _validation_details(err: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for item in err.errors():
        loc = [str(p) for p in item.get("loc", ())]
        details.append(field_error(".".join(loc), str(item.get("msg", "")), str(item.get("type"))))
    return details


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status,
        exc.error,
        details=exc.details,
        retry_after=exc.retry_after,
        extra=exc.extra,
    )


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "Validation failed", details=_validation_details(exc))


_HTTP_MESSAGES = {404: "Not found", 405: "Method not allowed"}


def _allowed_methods(request: Request, exc: StarletteHTTPException) -> str | None:
    """Every method the path answers to. Starlette's ``Allow`` names only the methods of the
    first route whose path matched; a path declared once per method has more."""
    named = (exc.headers or {}).get("Allow", "")
    methods = {m.strip() for m in named.split(",") if m.strip()}
    for route in request.app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] is not Match.NONE:
            methods.update(route_methods)
        methods.update(_included_methods(route, request.url.path))
    return ", ".join(sorted(methods)) or None


def _included_methods(route: object, path: str) -> set[str]:
    """The methods of an included router's routes whose path is ``path`` (FastAPI 0.165 keeps
    an included router as one entry; its routes are its effective candidates)."""
    candidates = getattr(route, "effective_candidates", None)
    if not callable(candidates):
        return set()
    # The first path template that matches, as routing picks it (/imports/bulk, not
    # /imports/{request_id}), with every method declared on that template.
    template = None
    found: set[str] = set()
    for candidate in candidates():
        regex, methods = getattr(candidate, "path_regex", None), getattr(candidate, "methods", None)
        if regex is None or not methods or not regex.match(path):
            continue
        template = template or getattr(candidate, "path_format", None)
        if getattr(candidate, "path_format", None) == template:
            found.update(methods)
    return found


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code in _HTTP_MESSAGES and message in (None, "Not Found", "Method Not Allowed"):
        message = _HTTP_MESSAGES[exc.status_code]
    # Kept: the exception's headers are part of the answer (405's Allow, 413's Connection).
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allowed := _allowed_methods(request, exc)) is not None:
        headers["Allow"] = allowed
    return error_response(exc.status_code, message or "Request failed", headers=headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal server error")


async def _too_broad(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TooBroad)
    return await _api_error(request, bad_request(exc.field, str(exc), "too_broad"))


def install(app: FastAPI) -> None:
    """Every error leaves the API as a JSON object with an ``error`` field."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(TooBroad, _too_broad)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
