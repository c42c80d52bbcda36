"""Names a test run owns: every service's topics, consumer groups and database made unique."""

from __future__ import annotations

from shared.contracts.topics import TOPICS
from shared.settings import MongoSettings, S3Settings, named_settings

# What a deployment (the demo) uses when nothing is set: a test run must never touch these.
DEFAULT_DATABASE: str = MongoSettings.model_fields["database"].default
DEFAULT_BUCKET: str = S3Settings.model_fields["bucket"].default
GROUPS = named_settings("group_id", "updates_group_id", "hooks_group_id", "app_id")
TOPIC_SETTINGS = named_settings(suffix="_topic")

DEFAULT_TOPICS: frozenset[str] = frozenset({t.name for t in TOPICS} | set(TOPIC_SETTINGS.values()))
DEFAULT_GROUPS: frozenset[str] = frozenset(GROUPS.values())


def isolated_env(unique: str) -> dict[str, str]:
    """Environment that points every service at names of this test alone.

    A topic's name is derived from its default, so two services that share a topic by default
    (the ingestor's raw topic is the normalizer's input) still share it.
    """
    env = {var: f"{name}.{unique}" for var, name in TOPIC_SETTINGS.items()}
    env |= {var: f"{name}-{unique}" for var, name in GROUPS.items()}
    return env | {"MONGO_DATABASE": f"test_{unique}", "S3_BUCKET": f"test-{unique}"}
