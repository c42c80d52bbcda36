"""Webhook subscriptions to canonical changes: the stored shape, the filters and how a change
matches them, and which URLs may be called. The API writes subscriptions; the importer matches
changes against them and the notifier delivers (see docs/IMPORTER.md#webhook-subscriptions).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from shared.contracts import CanonicalChange, ChangeOp, Provider
from shared.contracts.documents import Part
from shared.mongo import WEBHOOK_SUBSCRIPTIONS, Document

__all__ = ["WEBHOOK_SUBSCRIPTIONS"]  # re-exported: the collection every side names
CANONICAL_CHANGED = "canonical.changed"  # the Notification type of a matched change
SECRET_MIN_LENGTH = 16
MEAN_RADIUS_KM = 6371.0088


class Near(Part):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_km: float = Field(default=50.0, gt=0, le=20_000)


class WebhookFilters(Part):
    """All given filters must hold (an empty set of filters matches every change)."""

    source: Provider | None = Field(
        default=None, description="only events that this provider lists (one of its sources)"
    )
    category: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="category or subcategory, comma list, case-insensitive; a category "
        "includes its subcategories (as the listings' category filter)",
    )
    near: Near | None = Field(
        default=None, description="events whose venue is within radius_km (default 50) of lat/lon"
    )
    types: list[ChangeOp] | None = Field(
        default=None,
        max_length=len(ChangeOp),
        description="change kinds (created, updated, cancelled, merged); none: every kind",
    )

    @field_validator("category")
    @classmethod
    def _named(cls, value: str | None) -> str | None:
        if value is not None and not categories_of(value):
            raise ValueError("name at least one category")
        return value


def categories_of(value: str | None) -> list[str]:
    return [c.strip().casefold() for c in (value or "").split(",") if c.strip()]


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * MEAN_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def matches(filters: WebhookFilters, change: CanonicalChange) -> bool:
    """Whether ``change`` is one the filters ask for (pure; the matcher's unit of work)."""
    event = change.event
    if filters.types and change.op not in filters.types:
        return False
    if filters.source is not None and all(s.source != filters.source for s in event.sources):
        return False
    wanted = categories_of(filters.category)
    if wanted:
        # A category's subtree is the category and its subcategories: an event carries both
        # its canonical category and subcategory, so either one naming it is a match.
        have = {(c or "").casefold() for c in (event.category, event.subcategory)} - {""}
        if not have.intersection(wanted):
            return False
    if filters.near is not None:
        venue = event.venue
        if venue is None or venue.lat is None or venue.lon is None:
            return False
        near = filters.near
        if distance_km(near.lat, near.lon, venue.lat, venue.lon) > near.radius_km:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Subscription:
    """What the importer needs to match (never the secret: it stays with the notifier)."""

    id: str
    owner: str
    filters: WebhookFilters
    created_at: datetime

    @classmethod
    def from_document(cls, doc: Document) -> Subscription:
        return cls(
            id=str(doc["_id"]),
            owner=str(doc["owner"]),
            filters=WebhookFilters.model_validate(doc.get("filters") or {}),
            created_at=doc["created_at"],
        )

    def wants(self, change: CanonicalChange) -> bool:
        # Only what changed after the subscription was made: a new consumer group (or a
        # replay of the compacted topic) never floods a subscriber with the catalogue's past.
        return change.changed_at >= self.created_at and matches(self.filters, change)


LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def blocked_address(address: str) -> bool:
    """Loopback, private, link-local, shared, reserved, multicast or unspecified: not an outside
    subscriber's address (cloud metadata at 169.254.169.254 included)."""
    try:
        ip: Any = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a subscription's URL, or None. Outside dev/test a host that is a
    loopback or private address (or a local name) is refused; the notifier checks the
    addresses a name resolves to again before each delivery."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as err:
        return f"not a valid URL: {err}"
    if parts.scheme not in ("http", "https"):
        return "the URL must be http or https"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "the URL needs a host"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed (use the secret)"
    if allow_private:
        return None
    if host.lower() in LOCAL_NAMES or host.lower().endswith((".localhost", ".local")):
        return f"{host} is a local name; outside dev/test the URL must reach a public address"
    if blocked_address(host):
        return f"{host} is a loopback or private address; use a public address"
    return None
