"""Create topics, indexes and the archive bucket (idempotent): ``python -m shared.bootstrap``."""

from __future__ import annotations

import asyncio
import sys

from shared.kafka import ensure_topics
from shared.mongo import ensure_indexes, get_database, make_client
from shared.s3 import ensure_bucket, s3_client
from shared.settings import ServiceSettings


async def bootstrap(settings: ServiceSettings) -> dict[str, object]:
    created_topics = await ensure_topics(settings.kafka)
    client = make_client(settings.mongo, appname="marquee-bootstrap")
    try:
        indexes = await ensure_indexes(get_database(client, settings.mongo))
    finally:
        await client.close()
    async with s3_client(settings.s3) as s3:
        bucket_created = await ensure_bucket(s3, settings.s3.bucket, settings.s3.region)
    return {
        "topics_created": created_topics,
        "indexes": indexes,
        "bucket": settings.s3.bucket,
        "bucket_created": bucket_created,
    }


def main() -> int:
    result = asyncio.run(bootstrap(ServiceSettings()))
    topics = result["topics_created"]
    print(f"topics created: {', '.join(topics) if isinstance(topics, list) and topics else 'none (all exist)'}")
    print(f"indexes ensured on: {', '.join(result['indexes'])}")  # type: ignore[arg-type]
    print(f"bucket {result['bucket']}: {'created' if result['bucket_created'] else 'exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
