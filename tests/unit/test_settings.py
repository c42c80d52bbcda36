"""Settings: per-service prefixes, shared connection variables, placeholder secrets refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import ApiSettings, IngestorSettings, NormalizerSettings, is_placeholder


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
    monkeypatch.setenv("API_JWT_SECRET", "k3J9x-long-random-value")
    monkeypatch.setenv("S3_ACCESS_KEY_ID", "AKIAREALKEY")
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "real/secret+value")
    assert ApiSettings().environment == "prod"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", True), ("changeme", True), ("dev-anything", True), ("Secret", True), ("x9Qz", False)],
)
def test_is_placeholder(value: str, expected: bool) -> None:
    assert is_placeholder(value) is expected
