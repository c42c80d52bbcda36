"""Producer and consumer factories enforce the delivery guarantees of DESIGN.md."""

from __future__ import annotations

import pytest

from shared.contracts.topics import EVENTS_CANONICAL, RAW_EVENTS
from shared.kafka import consumer_config, new_topic, producer_config
from shared.settings import KafkaSettings

SETTINGS = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_partitions=12)


def test_producer_is_acks_all_and_idempotent() -> None:
    config = producer_config(SETTINGS, linger_ms=20)
    assert config["acks"] == "all"
    assert config["enable_idempotence"] is True
    assert config["linger_ms"] == 20
    with pytest.raises(ValueError, match="acks=all"):
        producer_config(SETTINGS, acks=1)
    with pytest.raises(ValueError, match="idempotence"):
        producer_config(SETTINGS, enable_idempotence=False)


def test_consumer_commits_manually() -> None:
    config = consumer_config(SETTINGS, "g1")
    assert config["enable_auto_commit"] is False
    assert config["group_id"] == "g1"
    with pytest.raises(ValueError, match="commit manually"):
        consumer_config(SETTINGS, "g1", enable_auto_commit=True)


def test_new_topics() -> None:
    canonical = new_topic(EVENTS_CANONICAL, SETTINGS)
    raw = new_topic(RAW_EVENTS, SETTINGS)
    assert canonical.topic_configs == {"cleanup.policy": "compact"}
    assert raw.topic_configs == {}
    assert canonical.num_partitions == raw.num_partitions == 12
