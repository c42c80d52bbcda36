"""Dedupe evaluation: pairwise precision and recall of clustering against the sandbox truth."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.sandbox import World, render
from services.normalizer.mappers import MappingError, is_addon, map_event
from services.normalizer.resolve import Profile, Resolver, zone_shift
from shared.contracts import Provider, RawRecord

EXPAND = {"venue", "ticket_availability", "event_sales_status", "category"}


def payload(world: World, provider: str, rec: Any) -> dict[str, Any]:
    match provider:
        case "ticketmaster":
            return render.tm_event(world, rec)
        case "seatgeek":
            return render.sg_event(world, rec)
        case "eventbrite":
            return render.eb_event(world, rec, EXPAND)
        case _:
            return render.mu_node(world, rec)


def records(world: World) -> list[tuple[RawRecord, str]]:
    """Every listed record as the ingestor would publish it, with its truth entity."""
    out = []
    for provider, listed in world.by_id.items():
        if provider == "spotify":
            continue
        for rec in listed.values():
            body = payload(world, provider, rec)
            external_id = str(body.get("token") or body["id"])
            # Add-ons are their own entities (a parking lot is not the show).
            truth = f"{rec.perf.pid}/{rec.addon}" if rec.addon else rec.perf.pid
            raw = RawRecord(provider=Provider(provider), external_id=external_id, payload=body)
            out.append((raw, truth))
    return out


def pairs(groups: dict[str, list[str]]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for members in groups.values():
        found.update(itertools.combinations(sorted(members), 2))
    return found


def zone_error(a: Profile, b: Profile) -> bool:
    """Whether two records' starts differ by a time-zone error (whole hours, same wall clock)."""
    if a.start is None or b.start is None:
        return False
    return zone_shift(a.start, a.wall, b.start, b.wall) is not None


def evaluate(world: World, threshold: float | None = None) -> dict[str, float]:
    resolver = Resolver() if threshold is None else Resolver(threshold)
    truth: dict[str, list[str]] = defaultdict(list)
    predicted: dict[str, list[str]] = defaultdict(list)
    profiles: dict[str, Profile] = {}
    failed = 0
    started = time.perf_counter()
    items = records(world)
    built = time.perf_counter() - started
    started = time.perf_counter()
    for raw, entity in items:
        try:
            event = map_event(raw)
        except MappingError:
            failed += 1
            continue
        profile = Profile.of(event, addon=is_addon(event))
        resolver.add(profile)
        profiles[profile.key] = profile
        truth[entity].append(profile.key)
    # Where each record ended up: merges move records after they were placed.
    for key, cluster in resolver.of_key.items():
        predicted[cluster].append(key)
    seconds = time.perf_counter() - started
    true_pairs, found_pairs = pairs(truth), pairs(predicted)
    hit = len(true_pairs & found_pairs)
    # The pairs whose starts differ by a provider's time-zone error (the sandbox's Eventbrite
    # organisers who leave their home zone on an event elsewhere): how many are found, and how
    # many such pairs were merged wrongly.
    shifted = {p for p in true_pairs if zone_error(profiles[p[0]], profiles[p[1]])}
    wrongly = {p for p in found_pairs - true_pairs if zone_error(profiles[p[0]], profiles[p[1]])}
    return {
        "records": len(items),
        "mapping_failures": failed,
        "true_pairs": len(true_pairs),
        "found_pairs": len(found_pairs),
        "precision": hit / len(found_pairs) if found_pairs else 1.0,
        "recall": hit / len(true_pairs) if true_pairs else 1.0,
        "zone_error_pairs": len(shifted),
        "zone_error_recall": len(shifted & found_pairs) / len(shifted) if shifted else 1.0,
        "zone_error_false_pairs": len(wrongly),
        "clusters": len(predicted),
        "merges": len(resolver.merged),
        "entities": len(truth),
        "render_s": built,
        "resolve_s": seconds,
    }


def summary(result: dict[str, float], args: argparse.Namespace) -> dict[str, Any]:
    """The ``--json`` object (keys documented in docs/BENCHMARKS.md)."""
    return {
        "benchmark": "dedupe_eval",
        "events": args.events,
        "seed": args.seed,
        "threshold": args.threshold,
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    world = World(seed=args.seed, events=args.events)
    result = evaluate(world, args.threshold)
    print(f"world: {args.events:,} performances, seed {args.seed}")
    for name, value in result.items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value:,}")
    if args.json:
        print(json.dumps(summary(result, args)))
    return 0 if result["precision"] >= 0.98 and result["recall"] >= 0.98 else 1


if __name__ == "__main__":
    raise SystemExit(main())
