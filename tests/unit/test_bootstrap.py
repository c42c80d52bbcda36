"""Bootstrap creates the topics the services are configured with, compaction kept."""

from __future__ import annotations

from shared.bootstrap import configured_topics
from shared.contracts.topics import TOPICS
from tests.namespace import DEFAULT_TOPICS, isolated_env


def test_defaults_are_the_topic_table() -> None:
    assert configured_topics({}) == list(TOPICS)


def test_a_renamed_topic_is_created_under_its_name_and_keeps_its_settings() -> None:
    topics = {t.name: t for t in configured_topics({"NORMALIZER_CHANGES_TOPIC": "changes.v2"})}
    # The API and importer still read the default name, so both exist.
    assert topics["changes.v2"].compacted
    assert topics["events.canonical"].compacted
    assert not topics["raw.events"].compacted


def test_an_isolated_test_env_names_no_default_topic() -> None:
    names = {t.name for t in configured_topics(isolated_env("u1"))}
    assert len(names) == len(TOPICS)
    assert not names & DEFAULT_TOPICS
    assert all(name.endswith(".u1") for name in names)
