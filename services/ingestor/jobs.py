"""Running ingest jobs: opens Kafka, S3 and MongoDB once, then syncs or replays."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from services.ingestor.errors import ProviderError, QuotaSpent
from services.ingestor.http import ApiClient, Observer, Page
from services.ingestor.progress import ProgressManager
from services.ingestor.providers.spotify import SpotifyEnricher
from services.ingestor.publish import PageArchive, RawPublisher, raw_record, store_page
from services.ingestor.stats import ProviderStats
from services.ingestor.store import StoreRetry, StoreUnavailable, is_transient
from services.ingestor.sync import Progress, Syncer, SyncQuery, SyncReport
from services.ingestor.wiring import (
    ALL_ORGANIZATIONS,
    STREAM_CLASSES,
    CallCounter,
    configured_queries,
    discover_organizations,
    make_client,
    make_streams,
)
from shared.contracts import IngestJob, IngestReply, JobKind, JobStatus, Provider, RawRecord
from shared.kafka import make_producer
from shared.mongo import CHECKPOINTS, Document, get_database
from shared.mongo import make_client as make_mongo
from shared.s3 import ensure_bucket, s3_client
from shared.settings import IngestorSettings

log = logging.getLogger(__name__)


@dataclass
class Resources:
    publisher: RawPublisher
    archive: PageArchive
    db: AsyncDatabase[Document]
    progress: ProgressManager


@contextlib.asynccontextmanager
async def open_resources(settings: IngestorSettings) -> AsyncIterator[Resources]:
    producer = make_producer(settings.kafka)
    await producer.start()
    mongo = make_mongo(settings.mongo, appname="marquee-ingestor")
    try:
        async with s3_client(settings.s3) as s3:
            # The archive bucket is the one thing a sync cannot do without; make sure of it.
            await ensure_bucket(s3, settings.s3.bucket, settings.s3.region)
            db = get_database(mongo, settings.mongo)
            yield Resources(
                RawPublisher(producer, settings.raw_topic),
                PageArchive(s3, settings.s3.bucket),
                db,
                ProgressManager(
                    db[CHECKPOINTS],
                    freshness=timedelta(minutes=settings.freshness_minutes),
                    retry=StoreRetry(budget_s=settings.store_retry_s),
                ),
            )
    finally:
        await producer.stop()
        await mongo.close()


async def run_sync(
    settings: IngestorSettings,
    resources: Resources,
    queries: list[SyncQuery],
    *,
    job_id: str,
    observers: list[Observer] | None = None,
    on_progress: Progress | None = None,
    horizon_days: int | None = None,
    max_records: int | None = None,
    start: datetime | None = None,
    enrich: bool = True,
) -> list[SyncReport]:
    """Sync the queries, providers in parallel, then enrich performers from Spotify."""
    providers = sorted({q.provider for q in queries})
    stats = ProviderStats()
    observers = [*(observers or []), stats.observe]
    clients: dict[Provider, ApiClient] = {
        p: make_client(settings, p, observers=observers) for p in providers
    }
    reports: list[SyncReport] = []
    try:
        if Provider.EVENTBRITE in clients:
            queries = await _expand_organizations(queries, clients[Provider.EVENTBRITE])
        syncer = Syncer(
            make_streams(clients),
            resources.publisher,
            resources.archive,
            resources.progress,
            job_id=job_id,
            on_progress=on_progress,
        )
        budget = max_records if max_records is not None else settings.max_events_per_sync

        async def provider_queries(provider: Provider) -> None:
            # One provider's queries run in turn (they share its budget); a spent quota
            # ends that provider's part of the job only.
            for query in (q for q in queries if q.provider is provider):
                report = await syncer.sync(
                    query,
                    horizon_days=horizon_days or settings.horizon_days,
                    max_records=budget,
                    start=start,
                )
                reports.append(report)
                if report.resume_at is not None:
                    break

        # Providers in parallel: each is bound by its own rate limit, not by our CPU.
        await asyncio.gather(*(provider_queries(p) for p in providers))
        if enrich and settings.spotify.enabled and syncer.performers:
            spotify = make_client(settings, Provider.SPOTIFY, observers=observers)
            clients[Provider.SPOTIFY] = spotify
            enricher = SpotifyEnricher(
                spotify,
                resources.publisher,
                resources.progress,
                job_id=job_id,
                max_lookups=settings.spotify.max_lookups_per_sync,
            )
            try:
                await enricher.enrich(syncer.performers)
            except ProviderError as err:
                # Enrichment is a bonus: the events are published; the next sync retries.
                log.warning("spotify enrichment failed: %s", err)
            log.info(
                "spotify: %d matched, %d without a confident match, %d fresh",
                enricher.matched,
                enricher.unmatched,
                enricher.skipped,
            )
    finally:
        for client in clients.values():
            await client.aclose()
        try:
            await stats.save(resources.db)
        except PyMongoError as err:  # statistics must never fail a sync
            log.warning("provider statistics not saved: %s", err)
    return reports


async def _expand_organizations(queries: list[SyncQuery], client: ApiClient) -> list[SyncQuery]:
    if not any(q.params.get("organization") == ALL_ORGANIZATIONS for q in queries):
        return queries
    found = await discover_organizations(client)
    expanded: list[SyncQuery] = []
    for query in queries:
        wildcard = query.params.get("organization") == ALL_ORGANIZATIONS
        expanded += found if wildcard else [query]
    return expanded


async def replay(
    resources: Resources,
    provider: Provider,
    stream_name: str,
    since: datetime,
    until: datetime,
    *,
    job_id: str,
) -> tuple[int, int]:
    """Republish records of pages archived in [since, until); returns (pages, records)."""
    classes = {cls.name: cls for cls in STREAM_CLASSES.get(provider, [])}
    if stream_name not in classes:
        raise ValueError(f"{provider.value} has no stream {stream_name!r}")
    stream = classes[stream_name]()  # parsing pages needs no HTTP client
    pages = records = 0
    async for archived in resources.archive.pages(provider, stream_name, since, until):
        page = Page(
            archived.url,
            200,
            {},
            archived.content,
            orjson.loads(archived.content),
            archived.fetched_at.timestamp(),
        )
        found = stream.records(page)
        await resources.publisher.publish(
            RawRecord(
                provider=provider,
                entity=stream.entity,
                external_id=stream.record_id(r),
                fetched_at=archived.fetched_at,
                job_id=job_id,
                payload=r,
            )
            for r in found
        )
        pages += 1
        records += len(found)
    return pages, records


async def run_job(
    settings: IngestorSettings,
    resources: Resources,
    job: IngestJob,
    *,
    observers: list[Observer] | None = None,
) -> IngestReply:
    """Carry out one on-demand job from ``ingest.requests``; never raises for provider errors.

    A store outage that outlasts the retries raises :class:`StoreUnavailable` instead of
    answering ``failed``: the caller leaves the job uncommitted, so it is run again later.
    """
    counter = CallCounter()
    watchers = [counter.observe, *(observers or [])]
    try:
        match job.kind:
            case JobKind.SYNC | JobKind.BACKFILL:
                reply = await _sync_job(settings, resources, job, watchers)
            case JobKind.SEARCH | JobKind.DETAIL:
                reply = await _fetch_job(settings, resources, job, watchers)
    except QuotaSpent as spent:
        reply = IngestReply(
            job_id=job.job_id,
            status=JobStatus.STOPPED,
            message=str(spent),
            resume_at=_aware(spent.resume_at),
        )
    except (ProviderError, ValueError, KeyError) as err:
        reply = IngestReply(job_id=job.job_id, status=JobStatus.FAILED, message=str(err))
    except StoreUnavailable:
        raise
    except PyMongoError as err:
        if is_transient(err):
            # Not the job's fault: it is run again once the store is back.
            raise StoreUnavailable(f"store unavailable: {type(err).__name__}: {err}") from err
        log.exception("job %s failed", job.job_id)
        reply = IngestReply(
            job_id=job.job_id,
            status=JobStatus.FAILED,
            message=f"internal error: {type(err).__name__}: {err}",
        )
    except Exception as err:
        log.exception("job %s failed", job.job_id)
        reply = IngestReply(
            job_id=job.job_id,
            status=JobStatus.FAILED,
            message=f"internal error: {type(err).__name__}: {err}",
        )
    reply.calls = sum(counter.calls.values())
    return reply


def _aware(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


async def _sync_job(
    settings: IngestorSettings, resources: Resources, job: IngestJob, observers: list[Observer]
) -> IngestReply:
    names = job.params.get("queries") or []
    queries = [
        q
        for q in configured_queries(settings)
        if q.provider is job.provider and (not names or q.name in names)
    ]
    if not queries:
        raise ValueError(f"no configured {job.provider.value} query matches {names}")
    start: datetime | None = None
    days = int(job.params.get("days") or settings.horizon_days)
    if job.kind is JobKind.BACKFILL:
        start = datetime.fromisoformat(str(job.params["from"])).replace(tzinfo=UTC)
        end = datetime.fromisoformat(str(job.params["to"])).replace(tzinfo=UTC)
        days = max((end - start).days, 1)
    reports = await run_sync(
        settings,
        resources,
        queries,
        job_id=job.job_id,
        observers=observers,
        horizon_days=days,
        max_records=job.params.get("max"),
        start=start,
    )
    stopped = [r for r in reports if r.stopped]
    return IngestReply(
        job_id=job.job_id,
        status=JobStatus.STOPPED if stopped else JobStatus.DONE,
        records=sum(r.records for r in reports),
        pages=sum(r.pages for r in reports),
        message="; ".join(r.stopped or "" for r in stopped) or None,
        resume_at=_aware(next((r.resume_at for r in stopped if r.resume_at), None)),
    )


async def _fetch_job(
    settings: IngestorSettings, resources: Resources, job: IngestJob, observers: list[Observer]
) -> IngestReply:
    client = make_client(settings, job.provider, observers=observers)
    try:
        stream = make_streams({job.provider: client})[(job.provider, "events")]
        ids: list[str] = []
        pages = 0
        if job.kind is JobKind.DETAIL:
            external_id = str(job.params["external_id"])
            path = stream.detail_path(external_id)
            if path is None:
                raise ValueError(f"{job.provider.value} has no detail endpoint")
            page = await client.get(path)
            detail = stream.detail_record(page)
            await resources.publisher.publish([raw_record(stream, external_id, job.job_id, detail)])
            ids, pages = [external_id], 1
        else:
            params = {k: v for k, v in job.params.items() if k != "max"}
            limit = int(job.params.get("max") or 200)
            async for page in stream.pages(params):
                found = await store_page(
                    resources.publisher, resources.archive, stream, page, job.job_id
                )
                ids += [stream.record_id(r) for r in found]
                pages += 1
                if len(ids) >= limit:
                    break
        return IngestReply(
            job_id=job.job_id,
            status=JobStatus.DONE,
            records=len(ids),
            pages=pages,
            external_ids=ids[:500],
        )
    finally:
        await client.aclose()
