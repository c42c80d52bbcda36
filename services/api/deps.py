"""What the routers receive: the wired services and the caller, as ``Annotated`` dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from services.api.auth import Authenticator, Principal, Role, bearer_token, forbidden
from services.api.catalogue import Catalogue
from services.api.errors import ApiError
from services.api.export import Exports
from services.api.imports import Importer, Links
from services.api.limits import RateLimiter, ResponseCache
from services.api.metrics import ApiMetrics
from services.api.ondemand import DetailFetcher
from services.api.store import Store
from services.api.stream import Hub
from shared.health import Check
from shared.settings import ApiSettings


@dataclass
class Services:
    """Everything the composition root wired; tests build their own."""

    settings: ApiSettings
    catalogue: Catalogue
    store: Store
    auth: Authenticator
    limiter: RateLimiter
    cache: ResponseCache
    metrics: ApiMetrics
    exporter: Exports
    importer: Importer | None = None
    fetcher: DetailFetcher | None = None
    stream: Hub | None = None  # the change stream's poller (GET /events/stream)
    checks: Mapping[str, Check] = field(default_factory=dict)


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


Deps = Annotated[Services, Depends(get_services)]

# Declared for the OpenAPI document (the "Authorize" button); the header is read below so that
# each failure gets its own message.
bearer_scheme = HTTPBearer(auto_error=False, description="JWT with a role claim")


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def get_principal(
    request: Request, _scheme: Annotated[object, Depends(bearer_scheme)] = None
) -> Principal:
    return await authenticate(request, lambda: bearer_token(request.headers.get("authorization")))


async def authenticate(request: Request, token_of: Callable[[], str]) -> Principal:
    """The caller named by the token ``token_of`` reads from the request (a header, or the web
    pages' cookie), with the failure and per-caller rate limits every route shares."""
    services: Services = request.app.state.services
    try:
        principal = await services.auth.authenticate(token_of())
    except ApiError as err:
        if err.status in (401, 403):
            _limit(services, f"ip:{_client_ip(request)}")
            services.metrics.auth_failures.labels(str(err.status)).inc()
        raise
    _limit(services, f"sub:{principal.subject}")
    return principal


def _limit(services: Services, client: str) -> None:
    wait = services.limiter.take(client)
    if wait is not None:
        services.metrics.rate_limited.inc()
        raise ApiError(429, "Rate limit exceeded", retry_after=wait)


def require(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.can(role):
            raise forbidden(f"Requires the {role.name.lower()} role")
        return principal

    return check


AnyUser = Annotated[Principal, Depends(require(Role.USER))]
Organizer = Annotated[Principal, Depends(require(Role.ORGANIZER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


async def get_links(request: Request, services: Deps) -> Links:
    base = services.settings.public_url or str(request.base_url)
    return Links(base.rstrip("/"))


LinkBase = Annotated[Links, Depends(get_links)]
