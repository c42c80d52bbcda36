"""Refuses request bodies over a size limit with 413, before the app reads or parses them."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import error_response

# The largest legitimate body (a bulk import of 100 items) is a few tens of KiB.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Tells the server to drop the connection after the 413 rather than drain the rest of a
# body nobody will read (uvicorn honours it).
_CLOSE = {"Connection": "close"}


def too_large_message(max_bytes: int) -> str:
    return f"Request body larger than {max_bytes} bytes"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit. An HTTPException because
    FastAPI lets those out of its body parsing (anything else becomes a 400) and the API's
    handler renders them in its error shape, headers included."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large_message(max_bytes), headers=dict(_CLOSE))


class BodyLimitMiddleware:
    """Pure ASGI: a declared ``Content-Length`` over ``max_bytes`` is refused without calling
    the app; a body without one (chunked) is counted as the app reads it, and the read that
    passes the limit raises :class:`BodyTooLarge`, so at most one chunk past the limit is
    ever held."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        started = False

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting, sending)
        except BodyTooLarge:
            # The API's exception handler normally answers it; this covers an app without one.
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, too_large_message(self.max_bytes), headers=dict(_CLOSE))
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent or unreadable (the bytes are counted anyway)."""
    value = Headers(scope=scope).get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
