"""S3 smoke tests through aiobotocore against the project's S3 server."""

from __future__ import annotations

import gzip

from shared.s3 import ensure_bucket, s3_client
from shared.settings import S3Settings


async def test_put_get_gzip_page(s3_settings: S3Settings, unique: str) -> None:
    body = gzip.compress(b'{"events": []}' * 100)
    key = f"raw/ticketmaster/events/2026/11/23/{unique}.json.gz"
    async with s3_client(s3_settings) as s3:
        assert await ensure_bucket(s3, s3_settings.bucket) is True
        assert await ensure_bucket(s3, s3_settings.bucket) is False
        await s3.put_object(
            Bucket=s3_settings.bucket,
            Key=key,
            Body=body,
            ContentEncoding="gzip",
            ContentType="application/json",
        )
        got = await s3.get_object(Bucket=s3_settings.bucket, Key=key)
        async with got["Body"] as stream:
            data = await stream.read()
        assert gzip.decompress(data) == b'{"events": []}' * 100
        listing = await s3.list_objects_v2(Bucket=s3_settings.bucket, Prefix="raw/ticketmaster/")
        assert [o["Key"] for o in listing["Contents"]] == [key]
