"""Names a test run owns: every service's topics, consumer groups and database made unique."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from shared.contracts.topics import TOPICS
from shared.settings import (
    ApiSettings,
    ImporterSettings,
    IngestorSettings,
    MongoSettings,
    NormalizerSettings,
    NotifierSettings,
    S3Settings,
)

SERVICE_SETTINGS: tuple[type[BaseSettings], ...] = (
    IngestorSettings,
    NormalizerSettings,
    ImporterSettings,
    NotifierSettings,
    ApiSettings,
)

# What a deployment (the demo) uses when nothing is set: a test run must never touch these.
DEFAULT_DATABASE: str = MongoSettings.model_fields["database"].default
DEFAULT_BUCKET: str = S3Settings.model_fields["bucket"].default


def _names(kind: str) -> dict[str, str]:
    """``ENV_VAR: default`` of every setting of that kind (topic, group) across the services."""
    found = {}
    for settings in SERVICE_SETTINGS:
        prefix = str(settings.model_config.get("env_prefix"))
        for field, info in settings.model_fields.items():
            if (kind == "topic" and field.endswith("_topic")) or (
                kind == "group" and field in ("group_id", "updates_group_id", "app_id")
            ):
                found[f"{prefix}{field}".upper()] = str(info.default)
    return found


DEFAULT_TOPICS: frozenset[str] = frozenset({t.name for t in TOPICS} | set(_names("topic").values()))
DEFAULT_GROUPS: frozenset[str] = frozenset(_names("group").values())


def isolated_env(unique: str) -> dict[str, str]:
    """Environment that points every service at names of this test alone.

    A topic's name is derived from its default, so two services that share a topic by default
    (the ingestor's raw topic is the normalizer's input) still share it.
    """
    env = {var: f"{name}.{unique}" for var, name in _names("topic").items()}
    env |= {var: f"{name}-{unique}" for var, name in _names("group").items()}
    return env | {"MONGO_DATABASE": f"test_{unique}", "S3_BUCKET": f"test-{unique}"}
