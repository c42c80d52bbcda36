"""Generate (or --check) docs/asyncapi.yaml and the topic table of docs/TOPICS.md."""

from __future__ import annotations

import argparse
import copy
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from shared.cloudevents import SPEC_VERSION, ce_headers
from shared.contracts.base import Contract, Provider
from shared.contracts.documents import CanonicalEvent, SourceRef, Venue, When
from shared.contracts.messages import (
    BulkImportRequest,
    CanonicalChange,
    ChangeOp,
    Entity,
    FieldError,
    ImportItem,
    ImportRequest,
    ImportResult,
    ImportStatus,
    IngestJob,
    IngestReply,
    JobKind,
    JobStatus,
    Notification,
    RawRecord,
)
from shared.contracts.schemas import file_name, schema_of
from shared.contracts.topics import TOPICS, Topic
from shared.settings import (
    ImporterSettings,
    IngestorSettings,
    KafkaSettings,
    NormalizerSettings,
    NotifierSettings,
)

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_TOPICS_DOC",
    "EXAMPLE_EVENT",
    "FLOWS",
    "REPLIES",
    "build",
    "main",
    "problems",
    "render",
    "topic_table",
    "undocumented",
    "write",
]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = ROOT / "docs" / "asyncapi.yaml"
DEFAULT_TOPICS_DOC = ROOT / "docs" / "TOPICS.md"
ASYNCAPI = "3.0.0"
KAFKA_BINDING = "0.5.0"


def _default(settings: type[BaseSettings], name: str) -> str:
    """A settings default, so that a renamed group id shows up here as a stale document."""
    value = settings.model_fields[name].default
    assert isinstance(value, str)
    return value


@dataclass(frozen=True, slots=True)
class Party:
    """A service on one side of a topic; ``group`` is its consumer group when it receives."""

    service: str
    group: str | None = None
    note: str = ""
    role: str = ""  # a short name for the part of the service, e.g. replay-dlq


@dataclass(frozen=True, slots=True)
class Flow:
    """Who sends and who receives a topic (DESIGN.md's topic table), and whether it is public."""

    senders: tuple[Party, ...]
    receivers: tuple[Party, ...]
    public: bool = False
    summary: str = ""
    # Further contracts (and their keys) the topic carries beside ``Topic.value``, told apart
    # by ``ce_type``.
    also: tuple[tuple[type[Contract], str], ...] = ()
    # Optional headers beside the CloudEvents ones: name -> description.
    headers: Mapping[str, str] = field(default_factory=dict)


# The API reads its replies with no consumer group: each replica wakes its own waiters.
API = Party("api", note="group-less: every replica reads every partition")
FLOWS: dict[str, Flow] = {
    "ingest.requests": Flow(
        senders=(Party("api"),),
        receivers=(Party("ingestor", _default(IngestorSettings, "group_id")),),
        summary="On-demand ingestion jobs (search, detail, sync, backfill) for the ingestor. "
        "A job with reply_to is answered with an IngestReply on that topic.",
    ),
    "raw.events": Flow(
        senders=(
            Party("ingestor"),
            Party(
                "normalizer", note="replay-dlq re-sends dead-lettered records", role="replay-dlq"
            ),
        ),
        receivers=(Party("normalizer", _default(NormalizerSettings, "app_id")),),
        summary="Provider records exactly as fetched (payload verbatim), and tombstones for "
        "records a provider no longer lists.",
        headers={
            "provider": "The provider, as in the payload (set by the ingestor)",
            "ce_matchprovider": "Spotify performer records: the provider of the matched performer",
            "ce_matchid": "Spotify performer records: that provider's performer id",
            "ce_matchmethod": "Spotify performer records: how the match was made",
            "ce_matchconfidence": "Spotify performer records: match confidence, 0-1",
            "ce_matchevents": "Spotify performer records: comma-separated provider event ids",
            "dlq_replayed_from": "Set by replay-dlq: '{dlq partition}:{dlq offset}' of the "
            "origin. Such a record has no ce_* headers (the DLQ does not keep them)",
        },
    ),
    "raw.events.dlq": Flow(
        senders=(Party("normalizer"),),
        receivers=(
            Party(
                "normalizer",
                f"{_default(NormalizerSettings, 'app_id')}-dlq-replay",
                "python -m services.normalizer replay-dlq, run by an operator",
                role="replay-dlq",
            ),
        ),
        summary="raw.events records the normalizer could not handle (invalid, unmappable).",
    ),
    "events.canonical": Flow(
        senders=(Party("normalizer"),),
        receivers=(
            Party("importer", _default(ImporterSettings, "updates_group_id")),
            Party(
                "importer",
                _default(ImporterSettings, "hooks_group_id"),
                "matches each change against the webhook subscriptions",
                role="hooks",
            ),
        ),
        public=True,
        summary="The public change feed of the canonical catalogue: one message per stored "
        "change of a canonical event (created, updated, cancelled, merged).",
        headers={
            "ce_sourceversions": "JSON object {'{source}:{external_id}': version}: the version "
            "of each per-source record the change was built from (absent on merged changes)",
        },
    ),
    "import.requests": Flow(
        senders=(Party("api"),),
        receivers=(Party("importer", _default(ImporterSettings, "group_id")),),
        summary="Requests to import external events as local events on the organiser's "
        "platform: one event (ImportRequest) or many (BulkImportRequest).",
        also=((BulkImportRequest, "request id"),),
    ),
    "import.results": Flow(
        senders=(Party("importer"),),
        receivers=(API,),
        public=True,
        summary="The outcome of every import request (and of every item of a bulk request).",
    ),
    "notifications": Flow(
        senders=(
            Party("importer"),
            Party(
                "notifier",
                note="notifier-replay-dlq re-sends dead-lettered notifications",
                role="replay-dlq",
            ),
        ),
        receivers=(Party("notifier", _default(NotifierSettings, "group_id")),),
        public=True,
        summary="Things to tell a user (event.imported, event.updated, event.cancelled).",
        headers={
            "dlq_replayed_from": "Set by notifier-replay-dlq: '{dlq partition}:{dlq offset}' of "
            "the origin",
        },
    ),
    "notifications.dlq": Flow(
        senders=(Party("notifier"),),
        receivers=(
            Party(
                "notifier",
                f"{_default(NotifierSettings, 'group_id')}-dlq-replay",
                "python -m services.importer notifier-replay-dlq, run by an operator",
                role="replay-dlq",
            ),
        ),
        summary="Notifications the notifier gave up delivering after NOTIFIER_MAX_ATTEMPTS.",
    ),
}


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer sent by a topic's receivers to the topic the request names (request/reply)."""

    value: type[Contract]
    location: str
    key: str
    receivers: tuple[Party, ...]
    note: str


REPLIES: dict[str, Reply] = {
    "ingest.requests": Reply(
        IngestReply,
        "$message.payload#/reply_to",
        "job id",
        (API,),
        "The topic an IngestJob names in reply_to (the API's is API_REPLY_TOPIC, api.replies).",
    ),
}

DLQ_HEADERS: dict[str, str] = {
    "dlq_error_class": "The exception class that rejected the record",
    "dlq_error_message": "Why, first 1,000 bytes",
    "dlq_source_topic": "The topic the record was read from",
    "dlq_source_partition": "Its partition there",
    "dlq_source_offset": "Its offset there",
    "dlq_attempt": "How many times it was tried",
}

_T = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
EXAMPLE_EVENT = CanonicalEvent(
    id="evt_3f1c9a27be0d41d2a8c6",
    title="The Lumineers",
    category="music",
    subcategory="rock",
    start=When(
        utc=datetime(2026, 7, 18, 19, 0, tzinfo=UTC),
        local="2026-07-18T20:00:00",
        timezone="Europe/London",
    ),
    venue=Venue(name="O2 Academy Brixton", city="London", country="GB", lat=51.465, lon=-0.115),
    sources=[
        SourceRef(source=Provider.TICKETMASTER, external_id="vvG1zZ9KbG4f"),
        SourceRef(source=Provider.SEATGEEK, external_id="7012345", match_score=0.93),
    ],
    version=3,
    created_at=_T,
    updated_at=_T,
)

# Examples are built from the models, so a contract change that breaks one fails here.
EXAMPLES: dict[type[Contract], tuple[tuple[str, Contract], ...]] = {
    IngestJob: (
        (
            "detail",
            IngestJob(
                job_id="job-8d2e",
                provider=Provider.TICKETMASTER,
                kind=JobKind.DETAIL,
                params={"id": "vvG1zZ9KbG4f"},
                requested_by="api",
                reply_to="api.replies",
                requested_at=_T,
            ),
        ),
    ),
    IngestReply: (
        (
            "done",
            IngestReply(
                job_id="job-8d2e",
                status=JobStatus.DONE,
                records=1,
                pages=1,
                calls=1,
                external_ids=["vvG1zZ9KbG4f"],
                finished_at=_T,
            ),
        ),
    ),
    RawRecord: (
        (
            "record",
            RawRecord(
                provider=Provider.TICKETMASTER,
                entity=Entity.EVENT,
                external_id="vvG1zZ9KbG4f",
                fetched_at=_T,
                job_id="scheduled-4b1e0c2a9f77",
                payload={"id": "vvG1zZ9KbG4f", "name": "The Lumineers", "...": "verbatim"},
            ),
        ),
        (
            "tombstone",
            RawRecord(
                provider=Provider.SEATGEEK,
                external_id="7012345",
                fetched_at=_T,
                tombstone=True,
            ),
        ),
    ),
    CanonicalChange: (
        (
            "updated",
            CanonicalChange(
                op=ChangeOp.UPDATED,
                canonical_id=EXAMPLE_EVENT.id,
                version=3,
                event=EXAMPLE_EVENT,
                changed_at=_T,
            ),
        ),
        (
            "merged",
            CanonicalChange(
                op=ChangeOp.MERGED,
                canonical_id="evt_9b0e44d1c2a3f5e6a7b8",
                version=2,
                event=EXAMPLE_EVENT.model_copy(
                    update={
                        "id": "evt_9b0e44d1c2a3f5e6a7b8",
                        "version": 2,
                        "duplicate_of": EXAMPLE_EVENT.id,
                    }
                ),
                merged_into=EXAMPLE_EVENT.id,
                changed_at=_T,
            ),
        ),
    ),
    ImportRequest: (
        (
            "by canonical id",
            ImportRequest(
                request_id="req-5a61",
                canonical_id=EXAMPLE_EVENT.id,
                requested_by="organiser-42",
                requested_at=_T,
            ),
        ),
    ),
    BulkImportRequest: (
        (
            "two events",
            BulkImportRequest(
                request_id="bulk-77c0",
                requested_by="organiser-42",
                items=[
                    ImportItem(canonical_id=EXAMPLE_EVENT.id),
                    ImportItem(provider=Provider.EVENTBRITE, external_id="912345678901"),
                ],
                requested_at=_T,
            ),
        ),
    ),
    ImportResult: (
        (
            "imported",
            ImportResult(
                request_id="req-5a61",
                status=ImportStatus.IMPORTED,
                local_event_id="le_4c0f6e1d2b3a495867d8e9f0",
                message="Event imported successfully",
                decided_at=_T,
            ),
        ),
        (
            "rejected",
            ImportResult(
                request_id="bulk-77c0.1",
                status=ImportStatus.REJECTED,
                message="Event not found",
                errors=[
                    FieldError(field="external_id", message="Event not found", code="not_found")
                ],
                decided_at=_T,
            ),
        ),
    ),
    Notification: (
        (
            "event.imported",
            Notification(
                notification_id="n_1a2b3c4d5e6f7a8b9c0d1e2f",
                user_id="organiser-42",
                type="event.imported",
                payload={
                    "request_id": "req-5a61",
                    "local_event_id": "le_4c0f6e1d2b3a495867d8e9f0",
                    "title": "The Lumineers",
                },
                created_at=_T,
            ),
        ),
    ),
}


def _channel_id(name: str) -> str:
    return name.replace(".", "_")


def _message_id(model: type[Contract]) -> str:
    return f"{model.schema_name}.v{model.schema_version}"


def _rewrite_refs(schema: Any) -> Any:
    """Point pydantic's ``#/$defs/X`` at ``#/components/schemas/X`` (defs are hoisted)."""
    if isinstance(schema, dict):
        out = {k: _rewrite_refs(v) for k, v in schema.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        return out
    if isinstance(schema, list):
        return [_rewrite_refs(v) for v in schema]
    return schema


def _add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    known = schemas.get(name)
    if known is not None and known != schema:
        raise ValueError(f"two different schemas are both named {name!r}: rename one model")
    schemas[name] = schema


def _payload_schema(model: type[Contract], schemas: dict[str, Any]) -> dict[str, str]:
    """Embed the contract's JSON Schema (as in docs/schemas) and return a reference to it."""
    schema = copy.deepcopy(schema_of(model))
    # An embedded $id would rebase every reference inside it; the file link says where it is.
    schema.pop("$id", None)
    for name, sub in sorted(schema.pop("$defs", {}).items()):
        _add_schema(schemas, name, _rewrite_refs(sub))
    schema["x-json-schema"] = f"schemas/{file_name(model)}"
    _add_schema(schemas, model.__name__, _rewrite_refs(schema))
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _ce_headers_schema(model: type[Contract], sources: list[str], extra: Mapping[str, str]) -> Any:
    own: dict[str, Any] = {
        "ce_type": {"type": "string", "const": model.type_name()},
        "ce_source": {"type": "string", "enum": sources} if sources else {"type": "string"},
    }
    own |= {name: {"type": "string", "description": text} for name, text in extra.items()}
    return {
        "allOf": [
            {"$ref": "#/components/schemas/CloudEventsHeaders"},
            {"type": "object", "properties": own},
        ]
    }


CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 in Kafka binary mode: the envelope rides in headers "
    "(UTF-8 strings), the body is the JSON payload.",
    "required": ["ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion"],
    "properties": {
        "ce_id": {
            "type": "string",
            "description": "Unique per event from its source. import.results uses the "
            "request id and notifications the notification id, so a redelivered copy keeps it.",
        },
        "ce_type": {
            "type": "string",
            "description": "The contract and its version, marquee.<name>.v<N>",
            "pattern": "^marquee\\.[a-z_]+\\.v[0-9]+$",
        },
        "ce_source": {"type": "string", "description": "The producing service, e.g. /normalizer"},
        "ce_time": {
            "type": "string",
            "format": "date-time",
            "description": "When the event happened, ISO 8601 with offset",
        },
        "ce_specversion": {"type": "string", "const": SPEC_VERSION},
        "content-type": {"type": "string", "const": "application/json"},
    },
}


def _dlq_headers_schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in DLQ_HEADERS.items()
    }
    for name in ("dlq_source_partition", "dlq_source_offset", "dlq_attempt"):
        props[name]["pattern"] = "^[0-9]+$"
    return {
        "type": "object",
        "description": "Why and from where the record was dead-lettered (UTF-8 strings). "
        "The record's key and value are the original bytes, unchanged.",
        "required": sorted(DLQ_HEADERS),
        "properties": props,
    }


def _example(model: type[Contract], name: str, value: Contract, source: str) -> dict[str, Any]:
    headers = ce_headers(value, source, event_id=f"{name.replace(' ', '-')}-0001", time=_T)
    return {
        "name": name.replace(" ", "_").replace(".", "_"),
        "summary": f"{model.__name__}: {name}",
        "headers": {k: v.decode() for k, v in headers},
        "payload": value.model_dump(mode="json", by_alias=True),
    }


def _message(
    model: type[Contract],
    key: str,
    senders: tuple[Party, ...],
    extra: Mapping[str, str],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    # A party with a role (replay-dlq) re-sends records as they were: it is not their source.
    sources = sorted({f"/{p.service}" for p in senders if not p.role})
    message: dict[str, Any] = {
        "name": model.type_name(),
        "title": model.__name__,
        "summary": (model.__doc__ or model.__name__).strip().splitlines()[0],
        "contentType": "application/json",
        "headers": _ce_headers_schema(model, sources, extra),
        "payload": _payload_schema(model, schemas),
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"Kafka key: {key}"},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    for correlation in ("request_id", "job_id"):
        if correlation in model.model_fields:
            message["correlationId"] = {
                "description": f"Answers carry the same {correlation}",
                "location": f"$message.payload#/{correlation}",
            }
            break
    examples = EXAMPLES.get(model, ())
    if examples:
        source = sources[0] if sources else "/marquee"
        message["examples"] = [_example(model, n, v, source) for n, v in examples]
    return message


def _dead_letter_message(topic: Topic) -> dict[str, Any]:
    origin = topic.name.removesuffix(".dlq")
    return {
        "name": f"{topic.name}.dead_letter",
        "title": f"Dead letter of {origin}",
        "summary": f"A record of {origin} that could not be handled, with the reason in headers",
        "contentType": "application/octet-stream",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {
            "type": "string",
            "format": "binary",
            "description": f"The original value bytes of the {origin} record, unchanged "
            "(they may not parse: that can be why they are here)",
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"Kafka key: {topic.key}"},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _channel(topic: Topic, flow: Flow, message_ids: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": ["compact" if topic.compacted else "delete"]}
    lines = [flow.summary or f"The {topic.name} topic."]
    lines.append(f"Key: {topic.key}.")
    if topic.compacted:
        lines.append(
            "Compacted: reading from the beginning gives at least the latest message of every key."
        )
    partitions = KafkaSettings.model_fields["topic_partitions"].default
    lines.append(
        f"Created by `python -m shared.bootstrap` with KAFKA_TOPIC_PARTITIONS partitions "
        f"(default {partitions}); per-key order holds within a partition."
    )
    return {
        "address": topic.name,
        "title": topic.name,
        "description": " ".join(lines),
        "messages": {mid: {"$ref": f"#/components/messages/{mid}"} for mid in message_ids},
        "tags": [{"name": "public" if flow.public else "internal"}],
        "bindings": {
            "kafka": {
                "topic": topic.name,
                "partitions": partitions,
                "topicConfiguration": config,
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _operation(
    party: Party, action: str, channel_id: str, message_ids: list[str], topic: str
) -> tuple[str, dict[str, Any]]:
    verb = "sends" if action == "send" else "receives"
    op_id = f"{party.service}_{verb}_{channel_id}"
    summary = f"{party.service} {verb} {topic}"
    if party.note:
        summary += f" ({party.note})"
    op: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in message_ids],
        "tags": [{"name": party.service}],
    }
    if action == "receive" and party.group:
        op["bindings"] = {
            "kafka": {
                "groupId": {"type": "string", "enum": [party.group]},
                "bindingVersion": KAFKA_BINDING,
            }
        }
    return op_id, op


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    assert isinstance(version, str)
    return version


DESCRIPTION = """\
The Kafka topics that join Marquee's services, generated from `shared/contracts/topics.py` and
the contract models by `python -m shared.contracts.asyncapi` (`--check` fails when this file is
stale). The JSON Schema of every payload is also in `docs/schemas/`; see `docs/TOPICS.md` for
how to consume the public topics (events.canonical, import.results, notifications).

Delivery is at-least-once: a message may arrive more than once, and out of order across keys.
Within a key (one partition) order holds. Dedupe by the payload's `version` where it has one,
else by `ce_id`. Consumers ignore unknown fields; a breaking change is a new `ce_type` version.
"""


def build(topics: tuple[Topic, ...] | None = None) -> dict[str, Any]:
    """The AsyncAPI document as plain data, channels in the order of ``topics`` (or TOPICS)."""
    topics = TOPICS if topics is None else topics
    schemas: dict[str, Any] = {
        "CloudEventsHeaders": CLOUDEVENTS_HEADERS,
        "DeadLetterHeaders": _dlq_headers_schema(),
    }
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in topics:
        flow = FLOWS.get(topic.name, Flow(senders=(), receivers=()))
        cid = _channel_id(topic.name)
        ids: list[str] = []
        if topic.value is None:
            mid = f"{cid}.dead_letter"
            messages[mid] = _dead_letter_message(topic)
            ids.append(mid)
        else:
            for model, key in ((topic.value, topic.key), *flow.also):
                mid = _message_id(model)
                messages[mid] = _message(model, key, flow.senders, flow.headers, schemas)
                ids.append(mid)
        channels[cid] = _channel(topic, flow, ids)
        for party in flow.senders:
            op_id, op = _operation(party, "send", cid, ids, topic.name)
            operations[op_id] = op
        reply = REPLIES.get(topic.name)
        rid = f"{cid}_replies"
        for party in flow.receivers:
            op_id, op = _operation(party, "receive", cid, ids, topic.name)
            if reply is not None:
                # The receivers of the request are the senders of the answer.
                mid = _message_id(reply.value)
                messages[mid] = _message(reply.value, reply.key, flow.receivers, {}, schemas)
                channels[rid] = {
                    "address": None,
                    "title": f"replies to {topic.name}",
                    "description": f"{reply.note} Key: {reply.key}.",
                    "messages": {mid: {"$ref": f"#/components/messages/{mid}"}},
                    "tags": [{"name": "internal"}],
                }
                op["reply"] = {
                    "address": {"location": reply.location},
                    "channel": {"$ref": f"#/channels/{rid}"},
                    "messages": [{"$ref": f"#/channels/{rid}/messages/{mid}"}],
                }
            operations[op_id] = op
        if reply is not None and flow.receivers:
            mid = _message_id(reply.value)
            for party in reply.receivers:
                op_id, op = _operation(party, "receive", rid, [mid], f"replies to {topic.name}")
                operations[op_id] = op
    return {
        "asyncapi": ASYNCAPI,
        "info": {
            "title": "Marquee topics",
            "version": _version(),
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0"},
            "tags": [
                {"name": "public", "description": "A contract for other teams' services"},
                {"name": "internal", "description": "Between Marquee's own services"},
            ],
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "KAFKA_BOOTSTRAP_SERVERS; `./marquee env` prints the local "
                "stack's actual address",
            },
            "compose": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "docker-compose.yml and deploy/k8s (the marquee-config ConfigMap)",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }


class _Dumper(yaml.SafeDumper):
    """Block style everywhere; multi-line strings as literal blocks, so the file reads well."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = (
    "# Generated by `python -m shared.contracts.asyncapi` from shared/contracts: do not edit.\n"
)


def render(document: Mapping[str, Any] | None = None) -> str:
    body = yaml.dump(
        dict(document or build()),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    return HEADER + body


BEGIN = "<!-- BEGIN GENERATED: python -m shared.contracts.asyncapi (do not edit inside) -->"
END = "<!-- END GENERATED -->"


def _who(parties: tuple[Party, ...]) -> str:
    names = {f"{p.service} {p.role}" if p.role else p.service for p in parties}
    return ", ".join(sorted(names)) or "operators"


def topic_table() -> str:
    """The Markdown table of every topic that docs/TOPICS.md embeds between its markers."""
    rows = [
        "| topic | key | value (`ce_type`) | JSON Schema | compacted | from → to |",
        "|---|---|---|---|---|---|",
    ]
    for topic in TOPICS:
        flow = FLOWS.get(topic.name, Flow(senders=(), receivers=()))
        key = topic.key
        if topic.value is None:
            value = f"the original {topic.name.removesuffix('.dlq')} record + `dlq_*` headers"
            schema = "—"
        else:
            models = [topic.value, *(m for m, _ in flow.also)]
            if flow.also:
                keys = [(topic.value, topic.key), *flow.also]
                key = "<br>".join(f"{k} ({m.__name__})" for m, k in keys)
            value = "<br>".join(f"{m.__name__} (`{m.type_name()}`)" for m in models)
            schema = "<br>".join(f"[{file_name(m)}](schemas/{file_name(m)})" for m in models)
        name = f"`{topic.name}`" + (" (public)" if flow.public else "")
        route = f"{_who(flow.senders)} → {_who(flow.receivers)}"
        if flow.public:
            route += ", any subscriber"
        compacted = "yes" if topic.compacted else "no"
        rows.append(f"| {name} | {key} | {value} | {schema} | {compacted} | {route} |")
    return "\n".join(rows) + "\n"


def with_table(text: str) -> str:
    """``text`` with the part between the markers replaced by the current topic table."""
    head, found, rest = text.partition(BEGIN)
    if not found or END not in rest:
        raise ValueError(f"no generated section: put {BEGIN} and {END} on lines of their own")
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n{topic_table()}{END}{tail}"


def problems(path: Path = DEFAULT_PATH, topics_doc: Path = DEFAULT_TOPICS_DOC) -> list[str]:
    """Why the committed documents do not match the code; empty when they do."""
    found = []
    if not path.exists():
        found.append(f"{path.name}: missing (run python -m shared.contracts.asyncapi)")
    elif path.read_text() != render():
        found.append(f"{path.name}: stale (run python -m shared.contracts.asyncapi)")
    if not topics_doc.exists():
        found.append(f"{topics_doc.name}: missing")
    else:
        text = topics_doc.read_text()
        try:
            if with_table(text) != text:
                found.append(f"{topics_doc.name}: topic table stale (run the same command)")
        except ValueError as err:
            found.append(f"{topics_doc.name}: {err}")
    return found


def undocumented() -> list[str]:
    """Topics without a FLOWS entry: their channel is written, but nobody sends or receives."""
    return [t.name for t in TOPICS if t.name not in FLOWS]


def write(path: Path = DEFAULT_PATH, topics_doc: Path = DEFAULT_TOPICS_DOC) -> list[Path]:
    """Write the AsyncAPI document and refresh the generated table of the topics page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    text = topics_doc.read_text() if topics_doc.exists() else f"# Topics\n\n{BEGIN}\n{END}\n"
    topics_doc.write_text(with_table(text))
    return [path, topics_doc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help="the AsyncAPI document")
    parser.add_argument(
        "--topics", type=Path, default=DEFAULT_TOPICS_DOC, help="the page with the topic table"
    )
    parser.add_argument("--check", action="store_true", help="only report differences")
    args = parser.parse_args(argv)
    if args.check:
        found = problems(args.out, args.topics)
        for line in found:
            print(line, file=sys.stderr)
        return 1 if found else 0
    for written in write(args.out, args.topics):
        print(written)
    for name in undocumented():
        print(f"note: {name} has no entry in FLOWS: say who sends and receives it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
