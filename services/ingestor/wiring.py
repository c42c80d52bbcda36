"""The ingestor's composition root: provider clients, streams and default queries from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from services.ingestor.budget import Budget
from services.ingestor.errors import Action, Outcome
from services.ingestor.http import (
    ApiClient,
    ApiKeyParam,
    Auth,
    BasicAuth,
    BearerToken,
    ClientCredentials,
    Observer,
    RetryPolicy,
)
from services.ingestor.providers.eventbrite import EventbriteEvents, EventbriteOrganizations
from services.ingestor.providers.meetup import MeetupEvents
from services.ingestor.providers.seatgeek import (
    SeatGeekEvents,
    SeatGeekPerformers,
    SeatGeekTaxonomies,
    SeatGeekVenues,
)
from services.ingestor.providers.ticketmaster import (
    TicketmasterAttractions,
    TicketmasterClassifications,
    TicketmasterEvents,
    TicketmasterVenues,
)
from services.ingestor.streams import Stream
from services.ingestor.sync import SyncQuery, SyncReport
from shared.contracts import Provider
from shared.metrics import ServiceMetrics
from shared.settings import IngestorSettings, ProviderSettings

STREAM_CLASSES: dict[Provider, list[type[Stream]]] = {
    Provider.TICKETMASTER: [
        TicketmasterEvents,
        TicketmasterVenues,
        TicketmasterAttractions,
        TicketmasterClassifications,
    ],
    Provider.SEATGEEK: [SeatGeekEvents, SeatGeekVenues, SeatGeekPerformers, SeatGeekTaxonomies],
    Provider.EVENTBRITE: [EventbriteEvents, EventbriteOrganizations],
    Provider.MEETUP: [MeetupEvents],
}

# Top-level categories that partition each provider's listings: together they list every
# event, and no event twice. Ticketmaster: its segments (every event has exactly one; comedy
# sits under "Arts & Theatre", family and community under "Miscellaneous"). SeatGeek: its
# root taxonomies ("comedy" is a child of "theater", so querying both listed comedy twice).
TICKETMASTER_SEGMENTS: dict[str, str] = {
    "music": "Music",
    "sports": "Sports",
    "arts": "Arts & Theatre",
    "miscellaneous": "Miscellaneous",
}
SEATGEEK_TAXONOMIES = ("concert", "sports", "theater", "family")

DEFAULT_QUERIES: list[SyncQuery] = [
    *(
        SyncQuery(Provider.TICKETMASTER, "events", name, {"classificationName": segment})
        for name, segment in TICKETMASTER_SEGMENTS.items()
    ),
    *(
        SyncQuery(Provider.SEATGEEK, "events", name, {"taxonomies.name": name})
        for name in SEATGEEK_TAXONOMIES
    ),
]


# Stands for "every organization the token belongs to", resolved when a sync starts.
ALL_ORGANIZATIONS = "*"


def configured_queries(settings: IngestorSettings) -> list[SyncQuery]:
    """The default queries plus one per configured Eventbrite org and Meetup group."""
    queries = list(DEFAULT_QUERIES)
    queries += [
        SyncQuery(Provider.EVENTBRITE, "events", f"org-{org}", {"organization": org})
        for org in settings.eventbrite.organizations or [ALL_ORGANIZATIONS]
    ]
    queries += [
        SyncQuery(Provider.MEETUP, "events", f"group-{name}", {"urlname": name})
        for name in settings.meetup.groups
    ]
    enabled = set(enabled_providers(settings))
    return [q for q in queries if q.provider in enabled]


async def discover_organizations(client: ApiClient) -> list[SyncQuery]:
    """Eventbrite has no public search: list the organizations the token belongs to."""
    stream = EventbriteOrganizations(client)
    found: list[SyncQuery] = []
    async for page in stream.pages({}):
        found += [
            SyncQuery(Provider.EVENTBRITE, "events", f"org-{r['id']}", {"organization": r["id"]})
            for r in stream.records(page)
        ]
    return found


class IngestorMetrics:
    """Calls, errors, 429s and budget left per provider; records published per provider."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.base = metrics
        self.calls = metrics.counter("provider_calls_total", "HTTP calls", ("provider", "status"))
        self.errors = metrics.counter(
            "provider_errors_total", "calls that did not succeed", ("provider", "action")
        )
        self.throttled = metrics.counter(
            "provider_throttled_total", "429/406/HIT_RATE_LIMIT answers", ("provider",)
        )
        self.budget_left = metrics.gauge(
            "provider_budget_remaining", "calls left in the quota period", ("provider",)
        )
        self.records = metrics.counter(
            "records_published_total", "records sent to raw.events", ("provider",)
        )
        self.records_per_s = metrics.gauge(
            "records_per_second", "records/s of the last scheduled sync", ("provider",)
        )

    def count(self, report: SyncReport) -> None:
        self.records.labels(report.provider.value).inc(report.records)
        if report.seconds:
            self.records_per_s.labels(report.provider.value).set(report.records / report.seconds)

    def observe(
        self,
        provider: Provider,
        url: str,
        status: int | None,
        outcome: Outcome,
        left: int | None,
        seconds: float = 0.0,
    ) -> None:
        self.calls.labels(provider.value, str(status or "none")).inc()
        if left is not None:
            self.budget_left.labels(provider.value).set(left)
        if outcome.action is not Action.OK:
            self.errors.labels(provider.value, outcome.action.value).inc()
        if outcome.action in (Action.RATE_LIMITED, Action.QUOTA_SPENT):
            self.throttled.labels(provider.value).inc()


@dataclass
class CallCounter:
    """Counts calls per provider (what the benchmark and the CLI summary report)."""

    calls: dict[Provider, int] = field(default_factory=dict)
    failures: dict[Provider, int] = field(default_factory=dict)

    def observe(
        self,
        provider: Provider,
        url: str,
        status: int | None,
        outcome: Outcome,
        left: int | None,
        seconds: float = 0.0,
    ) -> None:
        self.calls[provider] = self.calls.get(provider, 0) + 1
        if outcome.action is not Action.OK:
            self.failures[provider] = self.failures.get(provider, 0) + 1


def provider_settings(settings: IngestorSettings, provider: Provider) -> ProviderSettings:
    chosen: ProviderSettings = getattr(settings, provider.value)
    return chosen


def auth_for(settings: IngestorSettings, provider: Provider) -> Auth:
    match provider:
        case Provider.TICKETMASTER:
            return ApiKeyParam(settings.ticketmaster.api_key.get_secret_value())
        case Provider.SEATGEEK:
            return BasicAuth(
                settings.seatgeek.client_id.get_secret_value(),
                settings.seatgeek.client_secret.get_secret_value(),
            )
        case Provider.EVENTBRITE:
            return BearerToken(settings.eventbrite.token.get_secret_value())
        case Provider.MEETUP:
            return BearerToken(settings.meetup.token.get_secret_value())
        case Provider.SPOTIFY:
            return ClientCredentials(
                settings.spotify.token_url,
                settings.spotify.client_id.get_secret_value(),
                settings.spotify.client_secret.get_secret_value(),
            )


def make_client(
    settings: IngestorSettings,
    provider: Provider,
    *,
    observers: list[Observer] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ApiClient:
    ps = provider_settings(settings, provider)
    budget = Budget(rate_per_s=ps.rate_per_s, quota=ps.quota, period_s=ps.quota_period_s)
    watchers = list(observers or [])

    def observe(
        p: Provider, url: str, status: int | None, outcome: Outcome, left: int | None, s: float
    ) -> None:
        for watch in watchers:
            watch(p, url, status, outcome, left, s)

    return ApiClient(
        provider,
        ps.base_url,
        auth_for(settings, provider),
        budget,
        timeout_s=ps.timeout_s,
        retry=RetryPolicy(throttle_give_up_s=settings.throttle_give_up_s),
        observe=observe,
        transport=transport,
    )


def make_streams(clients: dict[Provider, ApiClient]) -> dict[tuple[Provider, str], Stream]:
    streams: dict[tuple[Provider, str], Stream] = {}
    for provider, client in clients.items():
        for cls in STREAM_CLASSES.get(provider, []):
            streams[(provider, cls.name)] = cls(client)
    return streams


def enabled_providers(settings: IngestorSettings) -> list[Provider]:
    return [p for p in STREAM_CLASSES if provider_settings(settings, p).enabled]
