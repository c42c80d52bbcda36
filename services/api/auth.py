"""JWT bearer tokens: HS256 with a shared secret or RS256 with keys from a JWKS URL; roles."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import httpx
import jwt

from services.api.errors import ApiError

log = logging.getLogger(__name__)


class Role(IntEnum):
    """Ordered: a role may do everything the roles below it may."""

    USER = 1
    ORGANIZER = 2
    ADMIN = 3


ROLE_NAMES = {r.name.lower(): r for r in Role}


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    expires_at: float

    def can(self, role: Role) -> bool:
        return self.role >= role


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def role_of(claims: dict[str, Any]) -> Role | None:
    """The highest known role named by ``role`` (a string) or ``roles`` (a list)."""
    named: list[Any] = []
    if isinstance(claims.get("role"), str):
        named.append(claims["role"])
    if isinstance(claims.get("roles"), list):
        named += claims["roles"]
    known = [ROLE_NAMES[n.lower()] for n in named if isinstance(n, str) and n.lower() in ROLE_NAMES]
    return max(known) if known else None


FetchJwks = Callable[[str], Awaitable[dict[str, Any]]]


async def fetch_jwks(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(url)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


class JwksKeys:
    """Signing keys from a JWKS URL, cached; an unknown ``kid`` refetches (at most every 30 s)."""

    def __init__(self, url: str, ttl_s: float, fetch: FetchJwks = fetch_jwks) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.fetch = fetch
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        body = await self.fetch(self.url)
        keys: dict[str, Any] = {}
        for jwk in jwt.PyJWKSet.from_dict(body).keys:
            keys[jwk.key_id or ""] = jwk.key
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def key(self, kid: str | None) -> Any:
        age = time.monotonic() - self._fetched_at
        if (kid not in self._keys and (age > 30 or not self._keys)) or age > self.ttl_s:
            async with self._lock:
                try:
                    await self._refresh()
                except (httpx.HTTPError, jwt.PyJWTError, ValueError) as err:
                    log.warning("JWKS fetch from %s failed: %s", self.url, err)
                    if not self._keys:
                        raise ApiError(503, "Token keys unavailable", retry_after=5) from err
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid not in self._keys:
            raise unauthorized("Invalid token: unknown signing key")
        return self._keys[kid]


class Authenticator:
    """Verifies bearer tokens; verified tokens are remembered until they expire (≤ 60 s)."""

    def __init__(
        self,
        *,
        algorithm: str,
        secret: str | None = None,
        jwks: JwksKeys | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        max_lifetime_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm == "HS256" and not secret:
            raise ValueError("HS256 needs a secret")
        if algorithm == "RS256" and jwks is None:
            raise ValueError("RS256 needs a JWKS URL")
        self.algorithm = algorithm
        self.secret = secret
        self.jwks = jwks
        self.audience = audience
        self.issuer = issuer
        self.max_lifetime_s = max_lifetime_s
        self.clock = clock
        self._seen: dict[str, tuple[Principal, float]] = {}

    async def authenticate(self, token: str) -> Principal:
        now = self.clock()
        seen = self._seen.get(token)
        if seen is not None and now < seen[1]:
            return seen[0]
        principal = await self._verify(token)
        if len(self._seen) > 50_000:
            self._seen.clear()
        self._seen[token] = (principal, min(principal.expires_at, now + 60))
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise unauthorized("Invalid token: malformed") from err
        if header.get("alg") != self.algorithm:
            # Includes "none": only the configured algorithm is ever accepted.
            raise unauthorized(f"Invalid token: algorithm must be {self.algorithm}")
        key: Any = self.secret
        if self.jwks is not None:
            kid = header.get("kid")
            key = await self.jwks.key(kid if isinstance(kid, str) else None)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError as err:
            raise unauthorized("Token has expired") from err
        except jwt.InvalidSignatureError as err:
            raise unauthorized("Invalid token: bad signature") from err
        except jwt.MissingRequiredClaimError as err:
            raise unauthorized(f"Invalid token: {err}") from err
        except jwt.PyJWTError as err:
            raise unauthorized(f"Invalid token: {err}") from err
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise unauthorized("Invalid token: no subject")
        if self.max_lifetime_s is not None:
            # A long-lived token is a standing credential: whoever copies it keeps access.
            issued = claims.get("iat")
            since = float(issued) if isinstance(issued, int | float) else self.clock()
            if float(claims["exp"]) - since > self.max_lifetime_s:
                raise unauthorized(
                    f"Invalid token: valid for more than {self.max_lifetime_s:.0f} s"
                    " (API_JWT_MAX_LIFETIME_S)"
                )
        role = role_of(claims)
        if role is None:
            raise forbidden("Token has no role (user, organizer or admin)")
        return Principal(subject, role, float(claims["exp"]))


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized("Authentication required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authentication required: use 'Authorization: Bearer <token>'")
    return token.strip()


def mint(
    subject: str,
    role: str | None,
    *,
    secret: str | None = None,
    private_key: Any = None,
    algorithm: str = "HS256",
    ttl_s: float = 3600,
    kid: str | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token (development and tests); ``role=None`` mints a role-less one."""
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": subject, "iat": int(issued), "exp": int(issued + ttl_s)}
    if role is not None:
        claims["role"] = role
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    key: Any = private_key if algorithm == "RS256" else secret
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)
