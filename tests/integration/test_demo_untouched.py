"""Runs last: the suite left the demo's catalogue, pending jobs and consumer groups as they were.

The sentinel (``conftest.py``) put a demo catalogue in the default database and pending jobs on
the default ``ingest.requests`` before the first integration test, as ``./marquee up`` and use
of the demo would. Every test uses names of its own, so none of that may have moved.
"""

from __future__ import annotations

from tests.integration.conftest import PENDING_JOBS, DemoSentinel
from tests.namespace import DEFAULT_DATABASE


async def test_the_suite_left_the_demo_as_it_was(demo_sentinel: DemoSentinel) -> None:
    before = demo_sentinel.before
    assert before is not None
    if demo_sentinel.created_topic:
        pending = sum(v for k, v in before.end_offsets.items() if k.startswith("ingest.requests/"))
        assert pending == PENDING_JOBS
    if demo_sentinel.seeded_database:
        assert {"events", "external_events"} <= set(before.collections)
    after = await demo_sentinel.snapshot()
    assert after.collections == before.collections, f"the {DEFAULT_DATABASE} database changed"
    assert after.end_offsets == before.end_offsets, "a test wrote to a default topic"
    assert after.committed == before.committed, "a test consumed with a default consumer group"
    assert after.databases - before.databases == set(), "databases left behind by tests"
