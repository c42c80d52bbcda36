"""Where fetched records go: raw.events (verbatim, keyed, CloudEvents) and the S3 archive."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from services.ingestor.http import Page
from services.ingestor.streams import Stream
from shared.cloudevents import ce_headers
from shared.contracts import Provider, RawRecord
from shared.contracts.topics import RAW_EVENTS

SOURCE = "/ingestor"


class RawPublisher:
    """Sends RawRecords to ``raw.events`` (``INGESTOR_RAW_TOPIC``); returns once the broker has
    them all."""

    def __init__(self, producer: AIOKafkaProducer[bytes, bytes], topic: str = RAW_EVENTS.name):
        self.producer = producer
        self.topic = topic
        self.published = 0

    async def publish(
        self, records: Iterable[RawRecord], *, extra_headers: dict[str, str] | None = None
    ) -> int:
        pending = []
        for record in records:
            pending.append(
                await self.producer.send(
                    self.topic,
                    record.to_json_bytes(),
                    key=record.key().encode(),
                    headers=ce_headers(
                        record,
                        SOURCE,
                        time=record.fetched_at,
                        extra={"provider": record.provider.value, **(extra_headers or {})},
                    ),
                )
            )
        # acks=all: once these resolve the records are on every in-sync replica.
        await asyncio.gather(*pending)
        self.published += len(pending)
        return len(pending)


def raw_record(stream: Stream, external_id: str, job_id: str, payload: Any = None) -> RawRecord:
    """The RawRecord for one fetched record of ``stream``; no payload makes a tombstone."""
    return RawRecord(
        provider=stream.provider,
        entity=stream.entity,
        external_id=external_id,
        job_id=job_id,
        payload=payload,
        tombstone=payload is None,
    )


async def store_page(
    publisher: RawPublisher, archive: PageArchive, stream: Stream, page: Page, job_id: str
) -> list[dict[str, Any]]:
    """Archive a page and publish its records; returns the records once both are durable."""
    records = stream.records(page)
    # Neither waits for the other: the S3 put and the Kafka acks overlap.
    await asyncio.gather(
        archive.put(stream.provider, stream.name, page, job_id=job_id),
        publisher.publish(raw_record(stream, stream.record_id(r), job_id, r) for r in records),
    )
    return records


@dataclass(frozen=True, slots=True)
class ArchivedPage:
    key: str
    provider: Provider
    stream: str
    fetched_at: datetime
    url: str
    content: bytes


class PageArchive:
    """Every fetched page, gzipped, under ``raw/{provider}/{stream}/{date}/`` in S3.

    Keys sort by fetch time within a day, so a time range is a prefix listing plus a filter.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "raw") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.archived = 0

    def key_for(self, provider: Provider, stream: str, page: Page) -> str:
        moment = datetime.fromtimestamp(page.fetched_at, UTC)
        digest = hashlib.sha256(page.url.encode() + page.content).hexdigest()[:12]
        return (
            f"{self.prefix}/{provider.value}/{stream}/{moment:%Y/%m/%d}/"
            f"{moment:%H%M%S%f}-{digest}.json.gz"
        )

    async def put(self, provider: Provider, stream: str, page: Page, *, job_id: str) -> str:
        key = self.key_for(provider, stream, page)
        moment = datetime.fromtimestamp(page.fetched_at, UTC)
        await self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=gzip.compress(page.content, compresslevel=5),
            ContentType="application/json",
            ContentEncoding="gzip",
            Metadata={
                "url": page.url[:1500],  # credentials already scrubbed by the client
                "status": str(page.status),
                "fetched-at": moment.isoformat(),
                "job-id": job_id,
            },
        )
        self.archived += 1
        return key

    async def pages(
        self, provider: Provider, stream: str, since: datetime, until: datetime
    ) -> AsyncIterator[ArchivedPage]:
        """Archived pages fetched in [since, until), oldest first."""
        day = since.astimezone(UTC).date()
        last = until.astimezone(UTC).date()
        paginator = self.client.get_paginator("list_objects_v2")
        while day <= last:
            prefix = f"{self.prefix}/{provider.value}/{stream}/{day:%Y/%m/%d}/"
            keys: list[str] = []
            async for result in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [item["Key"] for item in result.get("Contents", [])]
            for key in sorted(keys):
                stamp = key.rsplit("/", 1)[1].split("-", 1)[0]
                moment = datetime.strptime(f"{day:%Y%m%d}{stamp}", "%Y%m%d%H%M%S%f").replace(
                    tzinfo=UTC
                )
                if not since <= moment < until:
                    continue
                obj = await self.client.get_object(Bucket=self.bucket, Key=key)
                async with obj["Body"] as body:
                    raw = await body.read()
                yield ArchivedPage(
                    key,
                    provider,
                    stream,
                    moment,
                    obj.get("Metadata", {}).get("url", ""),
                    gzip.decompress(raw),
                )
            day = day.fromordinal(day.toordinal() + 1)
