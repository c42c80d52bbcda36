"""Create topics, indexes and the archive bucket (idempotent): ``python -m shared.bootstrap``."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from shared.kafka import ensure_topics
from shared.mongo import ensure_indexes, get_database, make_client
from shared.s3 import ensure_bucket, s3_client
from shared.settings import ServiceSettings


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    topics_created: list[str]
    indexes: dict[str, list[str]]
    bucket: str
    bucket_created: bool


async def bootstrap(settings: ServiceSettings) -> Bootstrapped:
    topics = await ensure_topics(settings.kafka)
    client = make_client(settings.mongo, appname="marquee-bootstrap")
    try:
        indexes = await ensure_indexes(get_database(client, settings.mongo))
    finally:
        await client.close()
    async with s3_client(settings.s3) as s3:
        bucket_created = await ensure_bucket(s3, settings.s3.bucket, settings.s3.region)
    return Bootstrapped(topics, indexes, settings.s3.bucket, bucket_created)


def main() -> int:
    done = asyncio.run(bootstrap(ServiceSettings()))
    print(f"topics created: {', '.join(done.topics_created) or 'none (all exist)'}")
    print(f"indexes ensured on: {', '.join(done.indexes)}")
    print(f"bucket {done.bucket}: {'created' if done.bucket_created else 'exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
