"""Settings: per-service prefixes, shared connection variables, placeholder secrets refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.api.auth import Authenticator, mint
from services.api.errors import ApiError
from shared.settings import ApiSettings, IngestorSettings, NormalizerSettings, is_placeholder

ROOT = Path(__file__).resolve().parents[2]
PROD = {
    "MARQUEE_ENV": "prod",
    "S3_ACCESS_KEY_ID": "AKIAREALKEY",
    "S3_SECRET_ACCESS_KEY": "real/secret+value",
}


def test_defaults_work_in_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARQUEE_ENV", raising=False)
    settings = ApiSettings()
    assert settings.environment == "dev"
    assert settings.jwt_secret.get_secret_value() == "dev-only-jwt-secret-for-local-demos"


def test_each_service_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTOR_HTTP_PORT", "9101")
    monkeypatch.setenv("NORMALIZER_HTTP_PORT", "9102")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("MONGO_DATABASE", "other")
    ingestor, normalizer = IngestorSettings(), NormalizerSettings()
    assert (ingestor.http_port, normalizer.http_port) == (9101, 9102)
    assert (
        ingestor.kafka.bootstrap_servers == normalizer.kafka.bootstrap_servers == "127.0.0.1:19092"
    )
    assert ingestor.mongo.database == "other"


def test_placeholder_secrets_refused_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_ENV", "prod")
    with pytest.raises(ValidationError) as caught:
        ApiSettings()
    message = str(caught.value)
    for name in ("jwt_secret", "s3.access_key_id", "s3.secret_access_key"):
        assert name in message
    assert "mongo.url" not in message


def test_real_secrets_accepted_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_ENV", "prod")
    monkeypatch.setenv("API_JWT_SECRET", "k3J9x-long-random-value-of-32-bytes+")
    monkeypatch.setenv("S3_ACCESS_KEY_ID", "AKIAREALKEY")
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "real/secret+value")
    assert ApiSettings().environment == "prod"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", True), ("changeme", True), ("dev-anything", True), ("Secret", True), ("x9Qz", False)],
)
def test_is_placeholder(value: str, expected: bool) -> None:
    assert is_placeholder(value) is expected


@pytest.mark.parametrize(
    "command",
    [["services.api"], ["services.api", "token", "--sub", "alice"]],
    ids=["serve", "token"],
)
@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"API_JWT_SECRET": "Tr0ub4dor&3-too-short"}, "API_JWT_SECRET: an HS256 secret needs 32+"),
        (
            {
                "API_JWT_SECRET": "Tr0ub4dor&3-long-enough-for-HS256!!",
                "API_RATE_LIMIT_BURST": "lots",
            },
            "API_RATE_LIMIT_BURST: Input should be a valid integer",
        ),
    ],
    ids=["short-secret", "bad-number"],
)
def test_a_bad_setting_is_one_line_naming_it_never_a_secret(
    command: list[str], settings: dict[str, str], named: str
) -> None:
    env = {**os.environ, **PROD, **settings}
    done = subprocess.run(
        [sys.executable, "-m", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert named in output
    assert len(output.strip().splitlines()) == 1, output
    assert "Traceback" not in output
    for secret in (env["API_JWT_SECRET"], "real/secret+value", "AKIAREALKEY"):
        assert secret not in output


async def test_tokens_living_longer_than_the_maximum_are_refused() -> None:
    secret = "k3J9x-long-random-value-of-32-bytes+"
    strict = Authenticator(algorithm="HS256", secret=secret, max_lifetime_s=3600)
    hour = mint("alice", "user", secret=secret, ttl_s=3600)
    assert (await strict.authenticate(hour)).subject == "alice"
    week = mint("alice", "user", secret=secret, ttl_s=7 * 86_400)
    with pytest.raises(ApiError) as caught:
        await strict.authenticate(week)
    assert caught.value.status == 401
    assert "API_JWT_MAX_LIFETIME_S" in caught.value.error
    # Without a maximum (dev and test) the same token is fine.
    lenient = Authenticator(algorithm="HS256", secret=secret)
    assert (await lenient.authenticate(week)).subject == "alice"
