"""Incremental sync of one query: day windows, cap-aware slicing, publish, archive, checkpoint."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.ingestor.errors import ProviderError, QuotaSpent
from services.ingestor.progress import ProgressManager, call_hash
from services.ingestor.providers.spotify import PerformerRef, performers_in
from services.ingestor.publish import PageArchive, RawPublisher, raw_record, store_page
from services.ingestor.streams import Stream, Window, aligned_windows
from shared.contracts import Provider
from shared.contracts.base import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncQuery:
    """A configured query: which stream, a partition name, and the provider's filter params."""

    provider: Provider
    stream: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SyncReport:
    provider: Provider
    query: str
    windows: int = 0
    windows_skipped: int = 0
    pages: int = 0
    records: int = 0
    tombstones: int = 0
    refetched: int = 0
    over_cap: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the sync stopped early (quota, max events), if it did
    resume_at: float | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.records / self.seconds if self.seconds else 0.0
        text = (
            f"{self.provider.value}/{self.query}: {self.records} records, {self.pages} pages, "
            f"{self.windows} windows ({self.windows_skipped} fresh, skipped), "
            f"{self.tombstones} tombstones, {rate:.0f} records/s"
        )
        if self.over_cap:
            text += f", {len(self.over_cap)} slices over the paging cap"
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        return text


Progress = Callable[[SyncReport], None]


class Syncer:
    """Runs sync queries for one job; everything it needs is passed in (composition root)."""

    def __init__(
        self,
        streams: dict[tuple[Provider, str], Stream],
        publisher: RawPublisher,
        archive: PageArchive,
        progress: ProgressManager,
        *,
        job_id: str,
        on_progress: Progress | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.streams = streams
        self.publisher = publisher
        self.archive = archive
        self.progress = progress
        self.job_id = job_id
        self.on_progress = on_progress
        self.clock = clock
        # Performers named in fetched events, for Spotify enrichment after the sync.
        self.performers: list[PerformerRef] = []
        # Records published by every sync of this job: MAX_EVENTS_PER_SYNC is job-wide.
        self.total = 0

    def stream(self, provider: Provider, name: str) -> Stream:
        try:
            return self.streams[(provider, name)]
        except KeyError:
            raise ProviderError(provider, f"no stream named {name!r} is configured") from None

    async def sync(
        self,
        query: SyncQuery,
        *,
        horizon_days: int,
        max_records: int | None = None,
        start: datetime | None = None,
    ) -> SyncReport:
        """Poll every day window of the horizon; skip windows polled within the freshness.

        ``max_records`` caps the records of the whole job (all syncs of this Syncer).
        """
        stream = self.stream(query.provider, query.stream)
        report = SyncReport(query.provider, query.name)
        first = start or self.clock()
        if stream.windowed:
            windows = list(aligned_windows(first, horizon_days, stream.window_days))
        else:
            # One partition for the whole horizon (providers without date filters or caps).
            day = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            windows = [Window(day, day + timedelta(days=horizon_days))]
        try:
            for window in windows:
                if max_records is not None and self.total >= max_records:
                    report.stopped = f"MAX_EVENTS_PER_SYNC ({max_records}) reached"
                    break
                await self._sync_window(stream, query, window, report, max_records)
        except QuotaSpent as spent:
            # Stop cleanly: completed windows are checkpointed, the rest is polled next run.
            report.stopped = str(spent)
            report.resume_at = spent.resume_at
            log.warning("sync stopped: %s", spent)
        report.seconds = time.monotonic() - report.started
        return report

    async def _sync_window(
        self,
        stream: Stream,
        query: SyncQuery,
        day: Window,
        report: SyncReport,
        max_records: int | None,
    ) -> None:
        partition = f"{query.name}:{day.label}" if stream.windowed else query.name
        bounds = stream.window_params(day) if stream.windowed else stream.horizon_params(day)
        call = call_hash(stream.path, {**query.params, **bounds})
        report.windows += 1
        if await self.progress.should_skip(query.provider, stream.name, partition, call):
            report.windows_skipped += 1
            self._tick(report)
            return
        checkpoint = await self.progress.load(query.provider, stream.name, partition)
        seen: set[str] = set()
        complete = True
        async for window, params, first in stream.slices(query.params, day):
            total = stream.total(first)
            if stream.cap is not None and total is not None and total > stream.cap:
                # Even a minimal slice matches more than the provider lets us page through.
                report.over_cap.append(f"{window.label} ({total} > {stream.cap})")
                log.error(
                    "%s %s slice %s matches %d records, only %d reachable",
                    query.provider.value,
                    query.name,
                    window.label,
                    total,
                    stream.cap,
                )
            async for page in stream.pages(params, first):
                # Archived and published before the window's checkpoint is written.
                records = await store_page(self.publisher, self.archive, stream, page, self.job_id)
                seen.update(stream.record_id(r) for r in records)
                for r in records:
                    self.performers += performers_in(query.provider, r)
                report.pages += 1
                report.records += len(records)
                self.total += len(records)
                self._tick(report)
                if max_records is not None and self.total >= max_records:
                    complete = False
                    break
            if not complete:
                break
        if not complete:
            return  # a partial window is neither checkpointed nor diffed: polled again next run
        previous = set(checkpoint.cursor.get("ids", []))
        for missing in sorted(previous - seen):
            await self._check_gone(stream, query.provider, missing, report)
        await self.progress.done(
            query.provider, stream.name, partition, call, cursor={"ids": sorted(seen)}
        )

    async def _check_gone(
        self, stream: Stream, provider: Provider, external_id: str, report: SyncReport
    ) -> None:
        """A record missing from its window: refetch it; a 404 means it is gone (tombstone)."""
        path = stream.detail_path(external_id)
        if path is None:
            return
        page = await stream.client.get(path)
        report.refetched += 1
        if page.status == 404:
            record = raw_record(stream, external_id, self.job_id)
            report.tombstones += 1
        else:
            detail = stream.detail_record(page)
            if detail is None:
                return
            # Still there, but moved out of the window (rescheduled): publish what it is now.
            await self.archive.put(provider, stream.name, page, job_id=self.job_id)
            record = raw_record(stream, external_id, self.job_id, detail)
        await self.publisher.publish([record])

    def _tick(self, report: SyncReport) -> None:
        if self.on_progress is not None:
            report.seconds = time.monotonic() - report.started
            self.on_progress(report)
