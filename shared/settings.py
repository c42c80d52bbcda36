"""Settings from the environment: a prefix per service, shared connection blocks, secret checks."""

from __future__ import annotations

import sys
from typing import Any, Literal, Self, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "test", "staging", "prod"]

# Values that ship as defaults or appear in examples: fine on a laptop, refused in staging/prod.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "placeholder", "secret", "password", "test", "testing"}
)


def is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return lowered in PLACEHOLDER_SECRETS or lowered.startswith(("dev-", "changeme", "change-me"))


class KafkaSettings(BaseSettings):
    """``KAFKA_*``: where the broker is and how topics are created."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "marquee"
    topic_partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    linger_ms: int = Field(default=5, ge=0)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None


class MongoSettings(BaseSettings):
    """``MONGO_*``: any MongoDB-wire server (MongoDB 7+, the local SecantusDB)."""

    model_config = SettingsConfigDict(env_prefix="MONGO_", extra="ignore")

    url: SecretStr = SecretStr("mongodb://127.0.0.1:27017/")
    database: str = "marquee"
    server_selection_timeout_ms: int = Field(default=10_000, ge=100)
    # A wedged server must surface as an error the caller retries, not a hang.
    socket_timeout_ms: int = Field(default=60_000, ge=100)
    write_concern_w: int | Literal["majority"] = "majority"
    journal: bool = True


class S3Settings(BaseSettings):
    """``S3_*``: the raw archive; ``S3_ENDPOINT_URL`` unset means AWS itself."""

    model_config = SettingsConfigDict(env_prefix="S3_", extra="ignore")

    endpoint_url: str | None = None
    region: str = "us-east-1"
    bucket: str = "marquee-raw"
    access_key_id: SecretStr = SecretStr("dev-access-key")
    secret_access_key: SecretStr = SecretStr("dev-secret-key")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)


def _secrets(value: Any, path: str, env: str = "") -> list[tuple[str, SecretStr]]:
    """Every secret below ``value`` as ("path (ENV_VAR)", secret); disabled providers skipped."""
    if isinstance(value, SecretStr):
        return [(f"{path} ({env})", value)]
    if isinstance(value, BaseSettings):
        if not getattr(value, "enabled", True):
            return []
        prefix = str(value.model_config.get("env_prefix") or "")
        found: list[tuple[str, SecretStr]] = []
        for name in type(value).model_fields:
            found += _secrets(
                getattr(value, name), f"{path}.{name}" if path else name, f"{prefix}{name}".upper()
            )
        return found
    return []


class ServiceSettings(BaseSettings):
    """What every service reads; subclasses set their own ``env_prefix``.

    ``MARQUEE_ENV`` (dev, test, staging, prod) is shared: outside dev and test, a secret left at
    a placeholder value stops the service at start with the name of the variable to set.
    """

    model_config = SettingsConfigDict(env_prefix="MARQUEE_", extra="ignore")

    environment: Environment = Field(default="dev", validation_alias="MARQUEE_ENV")
    log_level: str = "INFO"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    s3: S3Settings = Field(default_factory=S3Settings)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.environment in ("dev", "test"):
            return self
        bad = [
            path for path, secret in _secrets(self, "") if is_placeholder(secret.get_secret_value())
        ]
        # MONGO_URL is a secret because it may hold credentials, not because it must.
        bad = [p for p in bad if not p.startswith("mongo.url ")]
        if bad:
            raise ValueError(
                f"secrets left at placeholder values in {self.environment}: "
                + ", ".join(sorted(bad))
                + " (set them in the environment)"
            )
        return self


class ProviderSettings(BaseSettings):
    """One provider's endpoint, credentials and call budget; switching to the real API (or the
    sandbox) is only ``<PROVIDER>_BASE_URL`` plus credentials."""

    model_config = SettingsConfigDict(extra="ignore")

    enabled: bool = True
    base_url: str
    rate_per_s: float = Field(default=2.0, ge=0)
    quota: int | None = Field(default=None, ge=1, description="calls per quota period")
    quota_period_s: float = Field(default=86_400.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)


class TicketmasterSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETMASTER_", extra="ignore")

    base_url: str = "https://app.ticketmaster.com/discovery/v2/"
    api_key: SecretStr = SecretStr("dev-ticketmaster-key")
    # Docs say 5/s, the FAQ says 2/s: stay under the lower one. 5,000 calls a day.
    rate_per_s: float = Field(default=2.0, ge=0)
    quota: int | None = Field(default=5000, ge=1)


class SeatGeekSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="SEATGEEK_", extra="ignore")

    base_url: str = "https://api.seatgeek.com/2/"
    client_id: SecretStr = SecretStr("dev-seatgeek-client-id")
    client_secret: SecretStr = SecretStr("dev-seatgeek-client-secret")
    rate_per_s: float = Field(default=2.0, ge=0)


class EventbriteSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTBRITE_", extra="ignore")

    base_url: str = "https://www.eventbriteapi.com/v3/"
    token: SecretStr = SecretStr("dev-eventbrite-token")
    rate_per_s: float = Field(default=2.0, ge=0)
    quota: int | None = Field(default=2000, ge=1)
    quota_period_s: float = Field(default=3600.0, gt=0)
    organizations: list[str] = Field(
        default_factory=list, description="organization ids to list; empty: the token's own"
    )


class MeetupSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="MEETUP_", extra="ignore")

    base_url: str = "https://api.meetup.com/"
    token: SecretStr = SecretStr("dev-meetup-token")
    # Meetup meters points, ~500 per 60 s; a 50-event page costs 6 (1 + 1 per 10 asked for),
    # so 1.3 pages/s (470 points a minute) stays under it.
    rate_per_s: float = Field(default=1.3, ge=0)
    groups: list[str] = Field(default_factory=list, description="group urlnames to list")


class SpotifySettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="SPOTIFY_", extra="ignore")

    base_url: str = "https://api.spotify.com/v1/"
    token_url: str = "https://accounts.spotify.com/api/token"  # noqa: S105 (a URL)
    client_id: SecretStr = SecretStr("dev-spotify-client-id")
    client_secret: SecretStr = SecretStr("dev-spotify-client-secret")
    rate_per_s: float = Field(default=2.0, ge=0)
    max_lookups_per_sync: int | None = Field(
        default=500, ge=0, description="performers looked up per sync; the rest wait"
    )


class IngestorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGESTOR_", extra="ignore")

    group_id: str = "marquee-ingestor"
    requests_topic: str = "ingest.requests"
    raw_topic: str = Field(default="raw.events", description="where fetched records go")
    store_retry_s: float = Field(
        default=60.0,
        gt=0,
        description="a store call failing this long leaves the job uncommitted (redelivered)",
    )
    throttle_give_up_s: float = Field(
        default=600.0,
        gt=0,
        description="a provider throttling every call this long stops its part of a job",
    )
    # The seed's names (SYNC_INTERVAL_HOURS, ...) work too.
    sync_interval_hours: float = Field(
        default=24.0,
        gt=0,
        validation_alias=AliasChoices("INGESTOR_SYNC_INTERVAL_HOURS", "SYNC_INTERVAL_HOURS"),
    )
    max_events_per_sync: int = Field(
        default=10_000,
        ge=1,
        validation_alias=AliasChoices("INGESTOR_MAX_EVENTS_PER_SYNC", "MAX_EVENTS_PER_SYNC"),
    )
    enable_auto_sync: bool = Field(
        default=True,
        validation_alias=AliasChoices("INGESTOR_ENABLE_AUTO_SYNC", "ENABLE_AUTO_SYNC"),
    )
    horizon_days: int = Field(default=90, ge=1, le=730)
    freshness_minutes: float = Field(
        default=60.0, ge=0, description="an identical call within this window is not repeated"
    )
    ticketmaster: TicketmasterSettings = Field(default_factory=TicketmasterSettings)
    seatgeek: SeatGeekSettings = Field(default_factory=SeatGeekSettings)
    eventbrite: EventbriteSettings = Field(default_factory=EventbriteSettings)
    meetup: MeetupSettings = Field(default_factory=MeetupSettings)
    spotify: SpotifySettings = Field(default_factory=SpotifySettings)


class NormalizerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NORMALIZER_", extra="ignore")

    app_id: str = "marquee-normalizer"
    input_topic: str = "raw.events"
    changes_topic: str = "events.canonical"
    dlq_topic: str = "raw.events.dlq"
    batch_size: int = Field(default=500, ge=1, le=10_000)
    batch_wait_s: float = Field(default=0.5, gt=0)
    data_dir: str = Field(default=".cache/normalizer", description="faust's local state")


class ImporterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IMPORTER_", extra="ignore")

    group_id: str = "marquee-importer"
    requests_topic: str = "import.requests"
    results_topic: str = "import.results"
    notifications_topic: str = "notifications"
    changes_topic: str = "events.canonical"
    updates_enabled: bool = Field(
        default=True, description="apply events.canonical changes to imported local events"
    )
    updates_group_id: str = "marquee-importer-updates"
    hooks_enabled: bool = Field(
        default=True, description="match events.canonical changes against webhook subscriptions"
    )
    hooks_group_id: str = "marquee-importer-hooks"
    hooks_refresh_s: float = Field(
        default=5.0, gt=0, le=300, description="how long the active subscriptions are kept"
    )
    batch_size: int = Field(default=500, ge=1, le=10_000)
    batch_wait_ms: int = Field(default=200, ge=1)
    relay_on_start: bool = Field(
        default=True, description="emit results stored but not yet emitted when the worker starts"
    )
    failpoint: str | None = Field(
        default=None,
        description="tests only: exit abruptly at this named point (see services/importer)",
    )


class NotifierSettings(ServiceSettings):
    """``NOTIFIER_*``: delivers ``notifications`` to a webhook, or logs them when none is set."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    http_port: int = Field(default=8081, ge=0, le=65535)
    group_id: str = "marquee-notifier"
    notifications_topic: str = "notifications"
    dlq_topic: str = "notifications.dlq"
    webhook_url: str | None = Field(default=None, description="unset: notifications are logged")
    webhook_secret: SecretStr | None = Field(
        default=None, description="signs each body (HMAC-SHA256) when set"
    )
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, description="then the notification is dead-lettered")
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    concurrency: int = Field(default=16, ge=1, le=1000)
    batch_size: int = Field(default=200, ge=1, le=10_000)
    subscriptions_cache_s: float = Field(
        default=5.0, ge=0, le=300, description="how long a webhook subscription's URL is kept"
    )


class ApiSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore")

    http_port: int = Field(default=8000, ge=0, le=65535)
    public_url: str = Field(
        default="", description="base URL for links in responses; empty: the request's own"
    )
    # Auth: HS256 with a shared secret, or RS256 with keys from a JWKS URL.
    jwt_secret: SecretStr = SecretStr("dev-only-jwt-secret-for-local-demos")  # 32+ bytes: HS256
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwks_cache_s: float = Field(default=300.0, gt=0)
    # Topics the API talks to the other services through.
    import_requests_topic: str = "import.requests"
    import_results_topic: str = "import.results"
    ingest_requests_topic: str = "ingest.requests"
    reply_topic: str = Field(default="api.replies", description="IngestReply answers to the API")
    # Short waits of the request/reply endpoints before they answer 202 or 404.
    import_wait_s: float = Field(default=3.0, ge=0, le=30)
    detail_fetch_wait_s: float = Field(default=5.0, ge=0, le=30)
    detail_store_wait_s: float = Field(default=5.0, ge=0, le=30)
    not_found_ttl_s: float = Field(default=300.0, ge=0)
    feed_settle_s: float = Field(
        default=2.0, ge=0, description="the change feed holds back changes younger than this"
    )
    # Server-Sent Events (GET /events/stream): one poller per process tails the change feed.
    stream_poll_s: float = Field(default=0.2, gt=0, le=10, description="change feed poll period")
    stream_settle_s: float = Field(
        default=0.25, ge=0, le=10, description="the stream holds back changes younger than this"
    )
    stream_lookback_s: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="changes committed up to this late (behind the stream's position) still go out",
    )
    stream_max_clients: int = Field(default=2000, ge=0, description="SSE connections per process")
    stream_queue: int = Field(default=1000, ge=1, description="changes buffered per SSE client")
    stream_heartbeat_s: float = Field(default=15.0, gt=0, description="comment line period")
    stream_retry_ms: int = Field(default=3000, ge=0, description="the retry: hint sent first")
    # Per-client rate limit (per replica): a token bucket; 0 turns it off.
    rate_limit_per_minute: int = Field(default=600, ge=0)
    rate_limit_burst: int = Field(default=100, ge=1)
    # The seed's name works too.
    cache_duration_minutes: float = Field(
        default=5.0,
        ge=0,
        validation_alias=AliasChoices("API_CACHE_DURATION_MINUTES", "CACHE_DURATION_MINUTES"),
    )
    cache_max_entries: int = Field(default=10_000, ge=0)
    access_log: bool = Field(
        default=True, description="one JSON line per request (probes and /metrics left out)"
    )
    jwt_max_lifetime_s: float = Field(
        default=86_400.0,
        gt=0,
        description="outside dev/test, tokens valid for longer than this (exp - iat) are refused",
    )
    # The web dashboard's map (docs/WEB.md): no tiles by default (a locally served country
    # layer); a deployment with a tile server sets its URL template ({z}/{x}/{y}, https).
    web_map_tiles_url: str = Field(
        default="",
        validation_alias=AliasChoices("WEB_MAP_TILES_URL", "API_WEB_MAP_TILES_URL"),
        description="tile URL template for the web map, e.g. https://tiles.example/{z}/{x}/{y}.png",
    )
    web_map_tiles_attribution: str = Field(
        default="",
        validation_alias=AliasChoices("WEB_MAP_TILES_ATTRIBUTION", "API_WEB_MAP_TILES_ATTRIBUTION"),
    )

    @model_validator(mode="after")
    def _strong_shared_secret(self) -> Self:
        # RFC 7518 3.2: an HS256 key of fewer than 256 bits can be brute-forced offline.
        if self.environment in ("dev", "test") or self.jwt_algorithm != "HS256":
            return self
        if len(self.jwt_secret.get_secret_value().encode()) < HS256_MIN_BYTES:
            raise ValueError(f"API_JWT_SECRET: an HS256 secret needs {HS256_MIN_BYTES}+ bytes")
        return self


HS256_MIN_BYTES = 32
S = TypeVar("S", bound=BaseSettings)


def env_name(settings: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error's location stands for."""
    if not loc:
        return "settings"
    field = settings.model_fields.get(str(loc[0]))
    if field is None:
        return str(loc[0])
    if isinstance(field.validation_alias, str):
        return field.validation_alias
    nested = field.annotation
    if isinstance(nested, type) and issubclass(nested, BaseSettings) and len(loc) > 1:
        return env_name(nested, loc[1:])
    return f"{settings.model_config.get('env_prefix') or ''}{loc[0]}".upper()


def _nested(settings: type[BaseSettings], title: str) -> type[BaseSettings] | None:
    for field in settings.model_fields.values():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings):
            if nested.__name__ == title:
                return nested
            if (deeper := _nested(nested, title)) is not None:
                return deeper
    return None


def load(settings: type[S]) -> S:
    """A service's settings, or exit 2 with one line naming each bad variable and its rule;
    never a value (a bad setting may be a secret, and the traceback would print it)."""
    try:
        return settings()
    except ValidationError as err:
        # A nested group's own variables (KAFKA_*, MONGO_*) fail inside that group.
        failed = _nested(settings, err.title) or settings
        problems = [
            f"{env_name(failed, tuple(e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors(include_url=False, include_input=False, include_context=False)
        ]
        print(f"invalid settings ({settings.__name__}): " + "; ".join(problems), file=sys.stderr)
        raise SystemExit(2) from None


SERVICE_SETTINGS: tuple[type[ServiceSettings], ...] = (
    IngestorSettings,
    NormalizerSettings,
    ImporterSettings,
    NotifierSettings,
    ApiSettings,
)


def named_settings(*fields: str, suffix: str = "") -> dict[str, str]:
    """``ENV_VAR: default`` of every service setting named in ``fields`` or ending in ``suffix``
    (topic names, consumer groups): what a deployment or a test renames."""
    found = {}
    for settings in SERVICE_SETTINGS:
        prefix = str(settings.model_config.get("env_prefix"))
        for field, info in settings.model_fields.items():
            if field in fields or (suffix and field.endswith(suffix)):
                found[f"{prefix}{field}".upper()] = str(info.default)
    return found
