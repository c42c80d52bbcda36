"""Who is signed in: the API's own JWTs, carried by an HttpOnly cookie (or a Bearer header).

The cookie holds the same token the JSON API takes as ``Authorization: Bearer``; it is scoped to
``/web`` (the JSON API never reads it), HttpOnly, SameSite=Lax, Secure over HTTPS. Forms that
change something are POSTs, and a POST whose ``Origin`` is another site is refused.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from services.api.auth import Principal, bearer_token, unauthorized
from services.api.deps import Services, authenticate
from services.api.errors import ApiError

COOKIE = "marquee_token"
COOKIE_PATH = "/web"
DEV_TOKEN_TTL_S = 8 * 3600


def dev_login_enabled(services: Services) -> bool:
    """The dev login mints tokens with the shared secret: dev and test only, HS256 only."""
    settings = services.settings
    return settings.environment in ("dev", "test") and settings.jwt_algorithm == "HS256"


def _token(request: Request) -> str:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return cookie
    if request.headers.get("authorization"):
        return bearer_token(request.headers.get("authorization"))
    raise unauthorized("Authentication required")


async def signed_in(request: Request) -> Principal | None:
    """The caller, or None when no valid token came (rate limits still apply: a 429 raises)."""
    try:
        return await authenticate(request, lambda: _token(request))
    except ApiError as err:
        if err.status in (401, 403):
            return None
        raise


def set_token(request: Request, response: Response, token: str, expires_at: float) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(1, int(expires_at - time.time())),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_token(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")


def same_origin(request: Request, services: Services) -> bool:
    """A form POST from this site: no ``Origin`` (old browsers, curl) or this very origin (or
    the configured public URL's)."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    own = f"{request.url.scheme}://{request.url.netloc}"
    public = urlsplit(services.settings.public_url or "")
    return origin in (own, f"{public.scheme}://{public.netloc}" if public.netloc else own)
