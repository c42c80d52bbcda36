"""Series write cost per sync: the normalizer's batches with and without the price and
listing series (shared/series.py), same run, same store, in process (no broker).

Per mode (``off``: ``Normalizer.series = False``; ``on``: the default) a scratch database
gets three syncs of the records of a sandbox world of ``--events`` performances:

1. **first sync**: every record new, every priced record appends a point;
2. **moved sync**: the world's clock moves 24 h (prices drift, listings sell down) and every
   record is fetched again: changed records are rewritten, moved ones append a point;
3. **unchanged sync**: the same fetch again: nothing is mapped or written.

Reported per phase and mode: the batches' ``write_records`` stage (records and series, which go
out together) in ms per 1,000 records, the whole sync's records/s, and the points appended;
``extra_ms_per_1000`` is on minus off, and ``series_bulk_ms_per_1000`` the series bulks' own time
(they go out beside the records' write, so most of it overlaps). Modes alternate for
``--rounds`` rounds; means are shown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dedupe_eval import records as world_records
from benchmarks.system import on_shared_stack, scratch_database
from deploy.sandbox import World
from services.normalizer.pipeline import CatalogueStore, Message, Normalizer
from shared.contracts import RawRecord, utc_now
from shared.series import PRICE_SERIES
from shared.settings import MongoSettings

PHASES = ("first", "moved", "unchanged")


def fetch(world: World, at: Any) -> list[RawRecord]:
    return [raw.model_copy(update={"fetched_at": at}) for raw, _ in world_records(world)]


async def sync(normalizer: Normalizer, raws: list[RawRecord], batch: int) -> dict[str, float]:
    clock = normalizer.clock.seconds
    before_write = clock["write_records"]
    before_points = normalizer.store.writes[PRICE_SERIES, "append"]
    before_series = normalizer.store.series_seconds
    began = time.perf_counter()
    for start in range(0, len(raws), batch):
        messages = [
            Message(r.model_dump_json().encode(), r.key().encode(), 0, start + i)
            for i, r in enumerate(raws[start : start + batch])
        ]
        outcome = await normalizer.process(messages)
        if outcome.rejected:
            raise RuntimeError(f"{len(outcome.rejected)} records rejected")
    seconds = time.perf_counter() - began
    return {
        "records": len(raws),
        "seconds": seconds,
        "write_records_s": clock["write_records"] - before_write,
        "points": normalizer.store.writes[PRICE_SERIES, "append"] - before_points,
        "series_s": normalizer.store.series_seconds - before_series,
    }


async def one_mode(settings: MongoSettings, args: argparse.Namespace, series: bool) -> list[Any]:
    async def emit(*_: object) -> None:
        return None

    name = f"series_{'on' if series else 'off'}_{uuid.uuid4().hex[:8]}"
    async with scratch_database(settings, name) as db:
        normalizer = Normalizer(CatalogueStore(db), emit)
        normalizer.series = series
        await normalizer.start()
        world = World(seed=args.seed, events=args.events)
        t0 = utc_now()
        first = await sync(normalizer, fetch(world, t0), args.batch)
        moved_summary = world.advance(24)
        moved = await sync(normalizer, fetch(world, t0 + timedelta(hours=24)), args.batch)
        unchanged = await sync(normalizer, fetch(world, t0 + timedelta(hours=25)), args.batch)
        moved["repriced"] = moved_summary["repriced"]
        buckets = await db[PRICE_SERIES].count_documents({})
        return [first, moved, unchanged, buckets]


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    settings = MongoSettings(url=env["MONGO_URL"])
    runs: dict[bool, list[list[Any]]] = {False: [], True: []}
    for r in range(args.rounds):
        for series in (False, True) if r % 2 == 0 else (True, False):
            runs[series].append(await one_mode(settings, args, series))
    out: dict[str, Any] = {
        "benchmark": "series",
        "events": args.events,
        "batch": args.batch,
        "rounds": args.rounds,
    }
    for i, phase in enumerate(PHASES):
        row: dict[str, Any] = {}
        for series, label in ((False, "off"), (True, "on")):
            done = [r[i] for r in runs[series]]
            n = len(done)
            records = done[0]["records"]
            write_ms = sum(d["write_records_s"] for d in done) / n * 1000
            row[f"{label}_write_ms_per_1000"] = round(write_ms / records * 1000, 1)
            row[f"{label}_records_per_s"] = round(
                sum(d["records"] / d["seconds"] for d in done) / n, 1
            )
            row[f"{label}_points"] = round(sum(d["points"] for d in done) / n)
            if series:
                series_ms = sum(d["series_s"] for d in done) / n * 1000
                row["series_bulk_ms_per_1000"] = round(series_ms / records * 1000, 1)
            row["records"] = records
        row["extra_ms_per_1000"] = round(
            row["on_write_ms_per_1000"] - row["off_write_ms_per_1000"], 1
        )
        out[phase] = row
    out["moved"]["repriced_performances"] = runs[True][0][1]["repriced"]
    out["buckets"] = runs[True][0][3]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3_000, help="sandbox world size")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="off/on runs each (alternating)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    summary = on_shared_stack(run, args)
    for phase in PHASES:
        print(phase, summary[phase], file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
