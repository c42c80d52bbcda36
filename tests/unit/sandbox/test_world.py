"""World generation: deterministic, multi-provider, scalable; the clock mutates it."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import orjson

from deploy.sandbox.world import EB, MU, SG, TM, World


def test_same_seed_same_world() -> None:
    a, b = World(seed=7, events=800), World(seed=7, events=800)
    assert orjson.dumps(a.ground_truth()) == orjson.dumps(b.ground_truth())
    assert a.advance(24) == b.advance(24)
    assert orjson.dumps(a.ground_truth()) == orjson.dumps(b.ground_truth())
    assert orjson.dumps(World(seed=8, events=800).ground_truth()) != orjson.dumps(a.ground_truth())


def test_start_must_be_aware_and_is_used() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    w = World(seed=1, events=50, start=start)
    assert w.now == start
    try:
        World(seed=1, events=5, start=datetime(2027, 1, 1))  # noqa: DTZ001 - the point of the test
    except ValueError:
        pass
    else:
        raise AssertionError("a naive start must be rejected")


def test_truth_has_multi_provider_clusters_and_addons(world: World) -> None:
    truth = world.ground_truth()
    assert len(truth) == 2000
    sizes = Counter(len(c["records"]) for c in truth)
    multi = sum(n for k, n in sizes.items() if k >= 2) / len(truth)
    assert 0.3 < multi < 0.55, sizes
    assert sizes[3] > 0
    providers = {r["provider"] for c in truth for r in c["records"]}
    assert providers == {TM, SG, EB, MU}
    addons = [a for c in truth for a in c["addons"]]
    assert addons
    assert all(a["kind"] in {"parking", "pregame", "vip"} for a in addons)
    record_ids = {(r["provider"], r["external_id"]) for c in truth for r in c["records"]}
    assert not record_ids & {(a["provider"], a["external_id"]) for a in addons}
    # Every id is unique per provider and resolvable.
    for c in truth:
        for r in c["records"]:
            assert world.by_id[r["provider"]][r["external_id"]].perf.pid == c["performance_id"]


def test_titles_and_venues_differ_across_providers(world: World) -> None:
    sports = [p for p in world.perfs if p.category == "sports" and {TM, SG} <= set(p.recs)]
    assert sports
    p = sports[0]
    assert " vs. " in p.recs[TM].title
    assert " at " in p.recs[SG].title
    assert any(v.sg_name != v.name for v in world.venues)
    la = [v for v in world.venues if v.name == "Crypto.com Arena"]
    assert la


def test_ids_look_like_the_real_ones(world: World) -> None:
    for ext in list(world.by_id[TM])[:200]:
        assert ext.startswith("vvG1")
        assert 16 <= len(ext) <= 20
        assert ext.isalnum()
    assert all(ext.isdigit() for ext in world.by_id[SG])
    assert all(ext.isdigit() and len(ext) == 12 for ext in world.by_id[EB])
    assert all(r.mu_token.isalpha() for r in world.by_id[MU].values())


def test_advance_changes_cancels_reschedules_and_creates() -> None:
    w = World(seed=3, events=1500)
    before = {c["performance_id"]: c for c in w.ground_truth()}
    summary = w.advance(48)
    assert summary["changed"] > 0
    assert summary["cancelled"] > 0
    assert summary["rescheduled"] > 0
    assert summary["created"] > 0
    after = {c["performance_id"]: c for c in w.ground_truth()}
    assert len(after) == len(before) + summary["created"]
    cancelled = [pid for pid, c in after.items() if c["status"] == "cancelled"]
    newly = [pid for pid in cancelled if before[pid]["status"] != "cancelled"]
    assert len(newly) == summary["cancelled"]
    moved = [pid for pid in before if after[pid]["start_utc"] != before[pid]["start_utc"]]
    assert moved
    # Cancelled performances leave SeatGeek's index; Eventbrite's changed moves on.
    sg_listed = {r.ext_id for r in w.index[SG]}
    for pid in newly:
        for r in after[pid]["records"]:
            if r["provider"] == SG:
                assert not r["listed"]
                assert r["external_id"] not in sg_listed
    changed = [r for r in w.index[EB] if r.changed == w.now]
    assert changed


def test_generation_scales_to_50k() -> None:
    t0 = time.perf_counter()
    w = World(seed=42, events=50_000)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    window = w.window(TM, datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 8, tzinfo=UTC))
    query = time.perf_counter() - t0
    print(
        f"50k world built in {built:.2f}s; 1-week TM window ({len(window)}) in {query * 1e3:.2f}ms"
    )
    assert len(w.perfs) == 50_000
    assert window
