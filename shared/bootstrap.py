"""Create topics, indexes and the archive bucket (idempotent): ``python -m shared.bootstrap``."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, replace

from shared.contracts.topics import TOPICS, Topic
from shared.kafka import ensure_topics
from shared.mongo import (
    StoreCapabilities,
    StoreCapabilityError,
    ensure_indexes,
    get_database,
    make_client,
    probe_capabilities,
)
from shared.s3 import ensure_bucket, s3_client
from shared.settings import ServiceSettings, load, named_settings


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    topics_created: list[str]
    store: StoreCapabilities
    indexes: dict[str, list[str]]
    bucket: str
    bucket_created: bool


def configured_topics(env: dict[str, str] | None = None) -> list[Topic]:
    """The topic table under the names the services are configured with (their ``*_TOPIC``
    settings), so a deployment that renames a topic gets it created under that name."""
    env = dict(os.environ if env is None else env)
    names: dict[str, set[str]] = {}
    for var, default in named_settings(suffix="_topic").items():
        names.setdefault(default, set()).add(env.get(var, default))
    return [replace(t, name=n) for t in TOPICS for n in sorted(names.get(t.name, {t.name}))]


async def bootstrap(settings: ServiceSettings) -> Bootstrapped:
    topics = await ensure_topics(settings.kafka, configured_topics())
    client = make_client(settings.mongo, appname="marquee-bootstrap")
    try:
        # Before anything is created: a server that lacks a feature stops here, named.
        db = get_database(client, settings.mongo)
        store = await probe_capabilities(db)
        indexes = await ensure_indexes(db)
    finally:
        await client.close()
    async with s3_client(settings.s3) as s3:
        bucket_created = await ensure_bucket(s3, settings.s3.bucket, settings.s3.region)
    return Bootstrapped(topics, store, indexes, settings.s3.bucket, bucket_created)


def main() -> int:
    try:
        done = asyncio.run(bootstrap(load(ServiceSettings)))
    except StoreCapabilityError as err:
        print(f"bootstrap: {err}", file=sys.stderr)
        return 2
    print(f"topics created: {', '.join(done.topics_created) or 'none (all exist)'}")
    print(f"store: {done.store.server} ({', '.join(done.store.checked)})")
    print(f"indexes ensured on: {', '.join(done.indexes)}")
    print(f"bucket {done.bucket}: {'created' if done.bucket_created else 'exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
