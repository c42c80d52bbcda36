"""Settings from the environment: a prefix per service, shared connection blocks, secret checks."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
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
    """``MONGO_*``: any MongoDB-wire server (MongoDB 7, FerretDB 1.24)."""

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


def _secrets(value: Any, path: str) -> list[tuple[str, SecretStr]]:
    if isinstance(value, SecretStr):
        return [(path, value)]
    if isinstance(value, BaseSettings):
        found: list[tuple[str, SecretStr]] = []
        for name in type(value).model_fields:
            found += _secrets(getattr(value, name), f"{path}.{name}" if path else name)
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
        bad = [p for p in bad if p != "mongo.url"]
        if bad:
            raise ValueError(
                f"secrets left at placeholder values in {self.environment}: "
                + ", ".join(sorted(bad))
                + " (set them in the environment)"
            )
        return self


class IngestorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGESTOR_", extra="ignore")

    group_id: str = "marquee-ingestor"


class NormalizerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NORMALIZER_", extra="ignore")

    app_id: str = "marquee-normalizer"


class ImporterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IMPORTER_", extra="ignore")

    group_id: str = "marquee-importer"


class ApiSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore")

    http_port: int = Field(default=8000, ge=0, le=65535)
    jwt_secret: SecretStr = SecretStr("dev-only-jwt-secret")
