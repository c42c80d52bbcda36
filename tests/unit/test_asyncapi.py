"""docs/asyncapi.yaml and TOPICS.md follow the topic table; the examples there hold up."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from examples.consume_canonical import Catalogue, summary
from shared.cloudevents import ce_headers
from shared.contracts import asyncapi
from shared.contracts.asyncapi import EXAMPLE_EVENT
from shared.contracts.messages import CanonicalChange, ChangeOp, Notification
from shared.contracts.topics import TOPICS, Topic


@functools.cache
def _doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(asyncapi.DEFAULT_PATH.read_text())
    return loaded


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref} does not resolve"
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    # The components travel along so that #/components/schemas/... resolves inside the schema.
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def test_committed_document_is_current() -> None:
    assert asyncapi.problems() == []


def test_every_topic_is_a_channel_with_its_compaction() -> None:
    channels = {c["address"]: c for c in _doc()["channels"].values() if c["address"]}
    assert set(channels) == {t.name for t in TOPICS}
    for topic in TOPICS:
        kafka = channels[topic.name]["bindings"]["kafka"]
        assert kafka["topic"] == topic.name
        policy = kafka["topicConfiguration"]["cleanup.policy"]
        assert policy == (["compact"] if topic.compacted else ["delete"]), topic.name


def test_every_topic_says_who_sends_and_receives_it() -> None:
    assert asyncapi.undocumented() == []
    operations = _doc()["operations"].values()
    for topic in TOPICS:
        ref = f"#/channels/{topic.name.replace('.', '_')}"
        actions = {op["action"] for op in operations if op["channel"]["$ref"] == ref}
        assert "send" in actions, f"nobody sends {topic.name}"
        # A DLQ may be read by an operator only; every other topic has a consumer.
        if not topic.name.endswith(".dlq"):
            assert "receive" in actions, f"nobody receives {topic.name}"


def test_every_reference_resolves() -> None:
    doc = _doc()
    refs = _refs(doc)
    assert len(refs) > 50
    for ref in refs:
        _resolve(doc, ref)


def test_messages_carry_cloudevents_or_dlq_headers_and_a_key() -> None:
    doc = _doc()
    for mid, message in doc["components"]["messages"].items():
        assert message["bindings"]["kafka"]["key"]["description"].startswith("Kafka key: ")
        headers = message["headers"]
        if mid.endswith(".dead_letter"):
            dlq = _resolve(doc, headers["$ref"])
            assert set(dlq["required"]) == {
                "dlq_error_class",
                "dlq_error_message",
                "dlq_source_topic",
                "dlq_source_partition",
                "dlq_source_offset",
                "dlq_attempt",
            }
            continue
        base, own = headers["allOf"]
        assert _resolve(doc, base["$ref"])["required"] == [
            "ce_id",
            "ce_type",
            "ce_source",
            "ce_time",
            "ce_specversion",
        ]
        assert own["properties"]["ce_type"]["const"] == message["name"]


def test_payloads_embed_the_committed_json_schemas() -> None:
    doc = _doc()
    schemas = doc["components"]["schemas"]
    for message in doc["components"]["messages"].values():
        ref = message["payload"].get("$ref")
        if ref is None:
            continue
        schema = _resolve(doc, ref)
        linked = asyncapi.DEFAULT_PATH.parent / schema["x-json-schema"]
        assert linked.exists(), linked
        assert schema["title"] in schemas
        assert "$defs" not in schema
        assert "$id" not in schema


def test_every_example_validates_against_its_schemas() -> None:
    doc = _doc()
    checked = 0
    for message in doc["components"]["messages"].values():
        for example in message.get("examples", []):
            payload = _validator(doc, message["payload"])
            payload.validate(example["payload"])
            _validator(doc, message["headers"]).validate(example["headers"])
            checked += 1
    assert checked >= 8


def test_a_bad_example_would_be_caught() -> None:
    doc = _doc()
    message = doc["components"]["messages"][f"canonical_change.v{CanonicalChange.schema_version}"]
    bad = dict(message["examples"][0]["payload"], op="renamed")
    with pytest.raises(jsonschema.ValidationError):
        _validator(doc, message["payload"]).validate(bad)


def test_ingest_jobs_are_answered_on_the_reply_to_topic() -> None:
    operations = _doc()["operations"]
    reply = operations["ingestor_receives_ingest_requests"]["reply"]
    assert reply["address"]["location"] == "$message.payload#/reply_to"
    assert reply["messages"][0]["$ref"].endswith("ingest_reply.v1")


def test_a_new_topic_makes_both_documents_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc, page = tmp_path / "asyncapi.yaml", tmp_path / "TOPICS.md"
    page.write_text(f"# Topics\n\nIntro.\n\n{asyncapi.BEGIN}\nold\n{asyncapi.END}\n\nOutro.\n")
    asyncapi.write(doc, page)
    assert asyncapi.problems(doc, page) == []
    assert "Intro." in page.read_text()
    assert "Outro." in page.read_text()
    assert "old" not in page.read_text()
    extra = Topic("alerts.v1", Notification, "user id", compacted=True)
    monkeypatch.setattr(asyncapi, "TOPICS", (*TOPICS, extra))
    assert asyncapi.undocumented() == ["alerts.v1"]
    assert [p.split(":")[0] for p in asyncapi.problems(doc, page)] == ["asyncapi.yaml", "TOPICS.md"]
    channel = asyncapi.build((*TOPICS, extra))["channels"]["alerts_v1"]
    assert channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["compact"]
    assert "| `alerts.v1` | user id |" in asyncapi.topic_table()


def test_the_topics_page_needs_its_markers(tmp_path: Path) -> None:
    page = tmp_path / "TOPICS.md"
    page.write_text("# Topics without a generated section\n")
    [problem] = asyncapi.problems(asyncapi.DEFAULT_PATH, page)
    assert "no generated section" in problem


def test_the_committed_page_lists_every_topic_and_links_existing_schemas() -> None:
    text = asyncapi.DEFAULT_TOPICS_DOC.read_text()
    for topic in TOPICS:
        assert f"| `{topic.name}`" in text
    for link in re.findall(r"\]\((schemas/[^)]+)\)", text):
        assert (asyncapi.DEFAULT_TOPICS_DOC.parent / link).exists(), link


def test_check_command_exit_code(tmp_path: Path) -> None:
    out, page = tmp_path / "asyncapi.yaml", tmp_path / "TOPICS.md"
    args = ["--out", str(out), "--topics", str(page)]
    assert asyncapi.main(["--check", *args]) == 1
    assert asyncapi.main(args) == 0
    assert asyncapi.main(["--check", *args]) == 0
    out.write_text(out.read_text().replace("Marquee topics", "Other topics"))
    assert asyncapi.main(["--check", *args]) == 1


# The example subscriber (examples/consume_canonical.py): its rules, without a broker.


def _change(
    cid: str, version: int, op: ChangeOp = ChangeOp.UPDATED, into: str | None = None
) -> Any:
    event = EXAMPLE_EVENT.model_copy(update={"id": cid, "version": version})
    return CanonicalChange(op=op, canonical_id=cid, version=version, event=event, merged_into=into)


def test_example_consumer_drops_duplicates_and_older_versions() -> None:
    catalogue = Catalogue()
    assert catalogue.apply(_change("a", 1, ChangeOp.CREATED))
    assert catalogue.apply(_change("a", 3))
    assert not catalogue.apply(_change("a", 3))
    assert not catalogue.apply(_change("a", 2))
    held = catalogue.get("a")
    assert held is not None
    assert held.version == 3
    assert catalogue.counts == {"created": 1, "updated": 1, "stale": 2}


def test_example_consumer_follows_merge_chains_in_any_arrival_order() -> None:
    catalogue = Catalogue()
    # c merged into b, then b into a; the survivor a arrives last (another partition).
    catalogue.apply(_change("c", 2, ChangeOp.MERGED, "b"))
    catalogue.apply(_change("b", 5, ChangeOp.MERGED, "a"))
    assert catalogue.get("c") is None
    catalogue.apply(_change("a", 7))
    assert catalogue.resolve("c") == "a"
    found = catalogue.get("c")
    assert found is not None
    assert found.id == "a"
    assert set(catalogue.events) == {"a"}


def test_example_consumer_refuses_a_merge_cycle() -> None:
    catalogue = Catalogue()
    catalogue.apply(_change("a", 2, ChangeOp.MERGED, "b"))
    catalogue.apply(_change("b", 2, ChangeOp.MERGED, "a"))
    with pytest.raises(ValueError, match="merge chain"):
        catalogue.resolve("a")


def test_example_consumer_counts_what_it_cannot_read_and_goes_on() -> None:
    catalogue = Catalogue()
    change = _change("a", 1, ChangeOp.CREATED)
    headers = ce_headers(change, "/normalizer")
    assert catalogue.handle(change.to_json_bytes(), headers)
    assert not catalogue.handle(b"{not json", headers)
    assert not catalogue.handle(b"{}", [("ce_type", b"marquee.canonical_change.v9")])
    assert catalogue.counts["unreadable"] == 1
    assert catalogue.counts["unknown type"] == 1
    assert "1 live events" in summary(catalogue)


def test_example_consumer_reads_a_v1_change_left_in_the_compacted_topic() -> None:
    """canonical_change v2 only added ``event.start_conflicts``: a v1 message still applies."""
    catalogue = Catalogue()
    change = _change("a", 1, ChangeOp.CREATED)
    body = change.model_dump(mode="json", by_alias=True)
    del body["event"]["start_conflicts"]
    headers = [("ce_type", b"marquee.canonical_change.v1")]
    assert catalogue.handle(json.dumps(body).encode(), headers)
    held = catalogue.get("a")
    assert held is not None
    assert held.start_conflicts == []
