"""The service entry points start against the real stack and report ready."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from shared.settings import MongoSettings

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> httpx.Response:
    """The first answer of the service's probe."""
    started = time.monotonic()
    while True:
        assert proc.poll() is None, f"service exited with {proc.returncode}"
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError as err:
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{url} did not answer: {err}") from err
            time.sleep(0.3)


@pytest.mark.parametrize("service", ["ingestor", "normalizer", "importer", "api"])
def test_service_reports_ready(service: str, service_env: dict[str, str]) -> None:
    port = _free_port()
    env = {**service_env, f"{service.upper()}_HTTP_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        response = _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        assert response.status_code == 200, response.text
        assert response.json()["checks"] == {"kafka": "ok", "mongo": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert f"marquee_{service}_up 1.0" in metrics
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    # Uvicorn re-raises the SIGTERM it handled once its graceful shutdown is complete.
    assert proc.returncode in (0, -signal.SIGTERM), err.decode()[-2000:]
    assert b"stopped" in err or b"Application shutdown complete" in err


def test_readyz_fails_when_a_dependency_is_down(service_env: dict[str, str]) -> None:
    port, dead = _free_port(), _free_port()
    env = {
        **service_env,
        "NORMALIZER_HTTP_PORT": str(port),
        "MONGO_URL": f"mongodb://127.0.0.1:{dead}/",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.normalizer"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        response = _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["kafka"] == "ok"
        assert checks["mongo"] != "ok"
    finally:
        proc.terminate()
        proc.wait(20)


def test_bootstrap_command(
    service_env: dict[str, str], unique: str, mongo_settings: MongoSettings
) -> None:
    env = {**service_env, "S3_BUCKET": f"boot-{unique}", "MONGO_DATABASE": f"boot_{unique}"}

    def bootstrap() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shared.bootstrap"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = bootstrap()
    assert first.returncode == 0, first.stderr
    assert f"bucket boot-{unique}: created" in first.stdout
    again = bootstrap()
    assert again.returncode == 0, again.stderr
    assert "topics created: none (all exist)" in again.stdout
    assert f"bucket boot-{unique}: exists" in again.stdout
    client: MongoClient[dict[str, object]]
    with MongoClient(mongo_settings.url.get_secret_value()) as client:
        assert "external_events" in client[f"boot_{unique}"].list_collection_names()
        client.drop_database(f"boot_{unique}")
