"""Example subscriber of ``events.canonical``: a deduplicated local copy of the catalogue.

Run it against any Marquee Kafka (``eval "$(./marquee env)"`` for the local stack)::

    python -m examples.consume_canonical --until-caught-up
    python -m examples.consume_canonical --bootstrap kafka:9092 --seconds 60

What every subscriber of the topic has to do, and this one shows:

* **At-least-once**: a change may arrive twice (a producer retry, a restart). Apply a change only
  if its ``version`` is higher than the one held for that ``canonical_id``; duplicates and older
  versions are dropped. Order holds per key, so nothing newer is ever skipped.
* **Merges**: ``op=merged`` says the event is the same performance as ``merged_into``; forget it
  and send lookups of its id to the survivor (merges can chain: follow them).
* **Splits**: ``op=created`` with ``split_from`` is an event that left another one; the other
  event gets its own ``updated`` change. Nothing else to do.
* **Cancellations**: ``op=cancelled`` keeps the event, with ``event.status`` EventCancelled.
* **Unknown versions**: ``ce_type`` names the contract version; skip (and count) the others.

The copy lives in memory, so the consumer reads the compacted topic from the beginning with no
consumer group, which yields the latest change of every event, then follows new ones. A
subscriber that stores its copy durably uses a consumer group instead, with
``enable_auto_commit=False``, and commits offsets only after its writes are durable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

# An outside team would generate this model from docs/schemas/canonical_change.v2.json.
from shared.contracts import CanonicalChange, CanonicalEvent, ChangeOp

log = logging.getLogger("consume_canonical")

TOPIC = "events.canonical"
MAX_MERGE_HOPS = 32  # far more than real chains; guards against a cycle in bad data
# The versions this model reads: v2 only added ``event.start_conflicts`` (a default when absent),
# and the compacted topic keeps v1 changes of events not rewritten since.
KNOWN_TYPES = frozenset({"marquee.canonical_change.v1", CanonicalChange.type_name()})

Headers = Iterable[tuple[str, bytes]]


@dataclass
class Catalogue:
    """Live canonical events by id, the last version seen per id, and where merged ids went."""

    events: dict[str, CanonicalEvent] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    merged: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def apply(self, change: CanonicalChange) -> bool:
        """Apply one change; False when it is a duplicate or older than what is held."""
        cid = change.canonical_id
        if change.version <= self.versions.get(cid, 0):
            self.counts["stale"] += 1
            return False
        self.versions[cid] = change.version
        if change.op is ChangeOp.MERGED:
            assert change.merged_into is not None  # the contract guarantees it
            self.events.pop(cid, None)
            self.merged[cid] = change.merged_into
        else:
            # created, updated and cancelled all carry the whole event as it now is.
            self.events[cid] = change.event
            self.merged.pop(cid, None)
        self.counts[change.op.value] += 1
        return True

    def resolve(self, canonical_id: str) -> str:
        """The id an event goes by now: itself, or the survivor its merges lead to."""
        current = canonical_id
        for _ in range(MAX_MERGE_HOPS):
            target = self.merged.get(current)
            if target is None:
                return current
            current = target
        raise ValueError(f"merge chain from {canonical_id} is longer than {MAX_MERGE_HOPS}")

    def get(self, canonical_id: str) -> CanonicalEvent | None:
        """The live event for an id, following merges; None if unknown (or not received yet)."""
        return self.events.get(self.resolve(canonical_id))

    def handle(self, value: bytes | None, headers: Headers) -> bool:
        """Parse and apply one Kafka record; unreadable or unknown ones are counted, not fatal."""
        found = {k: v.decode(errors="replace") for k, v in headers}
        kind = found.get("ce_type")
        if kind is not None and kind not in KNOWN_TYPES:
            self.counts["unknown type"] += 1
            return False
        try:
            change = CanonicalChange.model_validate_json(value or b"")
        except ValidationError as err:
            # One bad message must not stop the feed: log it and go on.
            log.warning("unreadable change: %s", err)
            self.counts["unreadable"] += 1
            return False
        return self.apply(change)


async def _caught_up(
    consumer: AIOKafkaConsumer[bytes, bytes], ends: dict[TopicPartition, int]
) -> bool:
    return all([await consumer.position(tp) >= end for tp, end in ends.items()])


async def consume(
    bootstrap: str,
    catalogue: Catalogue,
    stop: asyncio.Event,
    *,
    topic: str = TOPIC,
    until_caught_up: bool = False,
) -> None:
    """Read ``topic`` from the beginning into ``catalogue`` until ``stop`` (or caught up)."""
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = {}
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for records in batches.values():
                for record in records:
                    catalogue.handle(record.value, record.headers)
            if until_caught_up:
                assigned = consumer.assignment()
                missing = [tp for tp in assigned if tp not in ends]
                if missing:
                    # Where the topic ended when we first saw each partition: the goal line.
                    ends.update(await consumer.end_offsets(missing))
                if assigned and await _caught_up(consumer, ends):
                    return
    finally:
        await consumer.stop()


def summary(catalogue: Catalogue) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(catalogue.counts.items())) or "nothing yet"
    return f"{len(catalogue.events)} live events, {len(catalogue.merged)} merged ids ({counts})"


async def _main(args: argparse.Namespace) -> Catalogue:
    catalogue = Catalogue()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(
        consume(
            args.bootstrap,
            catalogue,
            stop,
            topic=args.topic,
            until_caught_up=args.until_caught_up,
        )
    )
    deadline = time.monotonic() + args.seconds if args.seconds else None
    while not task.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 5)
        if not task.done():
            print(summary(catalogue), flush=True)
        if deadline is not None and time.monotonic() >= deadline:
            stop.set()
    await task
    return catalogue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.consume_canonical")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument("--topic", default=TOPIC)
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    parser.add_argument(
        "--until-caught-up", action="store_true", help="stop once the topic's end is reached"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    catalogue = asyncio.run(_main(args))
    print(summary(catalogue))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
