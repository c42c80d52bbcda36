"""The ingestor CLI: ``ingest``, ``backfill`` and ``replay`` with a progress line and a summary."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from services.ingestor.errors import ProviderError
from services.ingestor.jobs import open_resources, replay, run_sync
from services.ingestor.service import mark_synced
from services.ingestor.sync import SyncQuery, SyncReport
from services.ingestor.wiring import CallCounter, configured_queries, enabled_providers
from shared.contracts import Provider
from shared.contracts.messages import new_id
from shared.logs import configure_logging, scrub
from shared.mongo import LEASES
from shared.settings import IngestorSettings, load


class ProgressLine:
    """One status line on stderr: rewritten in place on a terminal, every 5 s otherwise.

    While a provider makes the sync wait (throttled, retrying), the line says why.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.out: TextIO = stream or sys.stderr
        self.tty = self.out.isatty()
        self.last = 0.0
        self.text = ""
        self.why = ""

    def __call__(self, report: SyncReport) -> None:
        rate = report.records / report.seconds if report.seconds else 0.0
        self.text = (
            f"{report.provider.value}/{report.query}: window {report.windows} "
            f"records {report.records} pages {report.pages} ({rate:.0f}/s)"
        )
        self.why = ""  # a page came in: whatever made it wait is over
        self._show()

    def waiting(self, why: str) -> None:
        self.why = why
        self._show()

    def _show(self) -> None:
        now = time.monotonic()
        if now - self.last < (0.1 if self.tty else 5):
            return
        self.last = now
        text = f"{self.text} | waiting: {self.why}" if self.why else self.text
        print(
            ("\r" + text[:150].ljust(90)) if self.tty else text,
            end="" if self.tty else "\n",
            file=self.out,
            flush=True,
        )

    def done(self) -> None:
        if self.tty:
            print(file=self.out)


class WaitReasons(logging.Handler):
    """A provider call's throttle or retry, shown on the progress line as the reason it waits."""

    def __init__(self, line: ProgressLine) -> None:
        super().__init__(logging.INFO)
        self.line = line

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "services.ingestor.http" and getattr(record, "provider", None):
            self.line.waiting(scrub(record.getMessage()))


def summarise(provider: Provider, reports: list[SyncReport]) -> str:
    """One line per provider: what its queries fetched and how much was skipped as fresh."""
    text = (
        f"{provider.value}: {len(reports)} queries, {sum(r.records for r in reports)} records, "
        f"{sum(r.pages for r in reports)} pages, {sum(r.windows for r in reports)} windows "
        f"({sum(r.windows_skipped for r in reports)} fresh, skipped), "
        f"{sum(r.tombstones for r in reports)} tombstones"
    )
    over = sum(len(r.over_cap) for r in reports)
    if over:
        text += f", {over} slices over the paging cap"
    stopped = {r.stopped for r in reports if r.stopped}
    if stopped:
        text += f"; stopped: {'; '.join(sorted(stopped))}"
    return text


def _when(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs a time zone (e.g. 2027-01-01T00:00Z)")
    return moment.astimezone(UTC)


def _day(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return _when(value)


def _queries(settings: IngestorSettings, providers: list[str], names: list[str]) -> list[SyncQuery]:
    allowed = set(enabled_providers(settings))
    wanted = {Provider(p) for p in providers} if providers else allowed
    unknown = wanted - allowed
    if unknown:
        raise SystemExit(
            f"provider(s) not available: {', '.join(sorted(p.value for p in unknown))} "
            f"(disabled in settings, or no connector yet)"
        )
    chosen = [
        q
        for q in configured_queries(settings)
        if q.provider in wanted and (not names or q.name in names)
    ]
    if not chosen:
        raise SystemExit(f"no configured query matches {names or 'the providers'}")
    return chosen


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m services.ingestor", description=__doc__)
    sub = top.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (default): scheduler, jobs, health")
    for name, text in (
        ("ingest", "sync the configured queries now"),
        ("backfill", "sync a past or future date range"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "--provider", action="append", default=[], choices=[p.value for p in Provider]
        )
        cmd.add_argument("--query", action="append", default=[], help="e.g. music, concert")
        cmd.add_argument("--max", type=int, help="stop after this many records (all queries)")
        cmd.add_argument("-v", "--verbose", action="store_true", help="a line per query")
        if name == "ingest":
            cmd.add_argument("--days", type=int, help="horizon in days (default from settings)")
            cmd.add_argument("--start", type=_when, help="horizon start (default: now)")
        else:
            cmd.add_argument("--from", dest="start", type=_day, required=True)
            cmd.add_argument("--to", dest="end", type=_day, required=True)
        cmd.add_argument("--log-file", type=Path, help="JSON log lines here, not on stderr")
    rep = sub.add_parser("replay", help="republish archived pages fetched in a time range")
    rep.add_argument("--provider", required=True, choices=[p.value for p in Provider])
    rep.add_argument("--stream", default="events")
    rep.add_argument("--since", type=_when, required=True)
    rep.add_argument("--until", type=_when, default=None)
    rep.add_argument("--log-file", type=Path, help="JSON log lines here, not on stderr")
    return top


async def _ingest(args: argparse.Namespace, settings: IngestorSettings) -> int:
    queries = _queries(settings, args.provider, args.query)
    if args.command == "backfill":
        days = max((args.end - args.start).days, 1)
        start = args.start
    else:
        days = args.days or settings.horizon_days
        start = args.start
    counter = CallCounter()
    line = ProgressLine()
    reasons = WaitReasons(line)
    logging.getLogger().addHandler(reasons)
    job_id = new_id()
    began = time.monotonic()
    began_at = datetime.now(UTC)
    async with open_resources(settings) as resources:
        reports = await run_sync(
            settings,
            resources,
            queries,
            job_id=job_id,
            observers=[counter.observe],
            on_progress=line,
            horizon_days=days,
            max_records=args.max,
            start=start,
        )
        whole = args.command == "ingest" and not (args.provider or args.query or args.max)
        if whole and all(r.resume_at is None for r in reports):
            # Every configured query ran to its end: the service's scheduler counts this as
            # its sync, rather than repeating it as soon as it starts.
            await mark_synced(resources.db[LEASES], began_at)
    logging.getLogger().removeHandler(reasons)
    line.done()
    elapsed = time.monotonic() - began
    if args.verbose:
        for report in reports:
            print(report.line())
    for provider in sorted({r.provider for r in reports}):
        print(summarise(provider, [r for r in reports if r.provider is provider]))
    records = sum(r.records for r in reports)
    calls = ", ".join(f"{p.value} {n}" for p, n in sorted(counter.calls.items())) or "none"
    print(
        f"job {job_id}: {records} records published in {elapsed:.1f}s "
        f"({records / elapsed if elapsed else 0:.0f}/s); calls: {calls}; "
        f"pages archived: {resources.archive.archived}"
    )
    stopped = [r for r in reports if r.resume_at is not None]
    for report in stopped:
        resume = datetime.fromtimestamp(report.resume_at or 0, UTC)
        print(f"{report.provider.value}: budget spent, resume after {resume:%Y-%m-%d %H:%M:%SZ}")
    return 3 if stopped else 0


async def _replay(args: argparse.Namespace, settings: IngestorSettings) -> int:
    until = args.until or datetime.now(UTC) + timedelta(seconds=1)
    async with open_resources(settings) as resources:
        pages, records = await replay(
            resources, Provider(args.provider), args.stream, args.since, until, job_id=new_id()
        )
    print(
        f"replayed {pages} archived pages: {records} records republished to "
        f"{resources.publisher.topic}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = load(IngestorSettings)
    configure_logging("ingestor", settings.log_level, getattr(args, "log_file", None))
    try:
        if args.command in ("ingest", "backfill"):
            return asyncio.run(_ingest(args, settings))
        if args.command == "replay":
            return asyncio.run(_replay(args, settings))
    except ProviderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from services.ingestor.main import run

    return run()
