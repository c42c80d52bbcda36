"""docker-compose.yml: official images, health checks everywhere, services run real modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_servers_use_the_official_images() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.1")
    assert services["mongo"]["image"] == "mongo:7"
    assert services["s3"]["image"].startswith("motoserver/moto:")


def test_every_long_running_container_has_a_health_check() -> None:
    services = _compose()["services"]
    for name, spec in services.items():
        if name == "bootstrap":
            continue
        assert spec.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_the_four_services_run_existing_modules_after_bootstrap() -> None:
    services = _compose()["services"]
    for name in ("ingestor", "normalizer", "importer", "api"):
        spec = services[name]
        module = spec["command"][-1]
        assert module == f"services.{name}"
        assert importlib.util.find_spec(module) is not None
        assert spec["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
        prefix = name.upper()
        assert spec["environment"][f"{prefix}_HTTP_HOST"] == "0.0.0.0"
        assert spec["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert services["bootstrap"]["command"] == ["python", "-m", "shared.bootstrap"]


def test_ingestor_points_at_the_sandbox_with_the_stack_variables() -> None:
    services = _compose()["services"]
    env = services["ingestor"]["environment"]
    for name in ("ticketmaster", "seatgeek", "eventbrite", "meetup", "spotify"):
        assert env[f"{name.upper()}_BASE_URL"].startswith("http://sandbox:8080/")
    assert services["ingestor"]["depends_on"]["sandbox"]["condition"] == "service_healthy"
    assert importlib.util.find_spec(services["sandbox"]["command"][2]) is not None
