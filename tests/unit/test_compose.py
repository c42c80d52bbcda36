"""docker-compose.yml: official images, health checks everywhere, services run real modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import (
    ApiSettings,
    ImporterSettings,
    IngestorSettings,
    NormalizerSettings,
    NotifierSettings,
    ServiceSettings,
)
from tests.unit.test_k8s import env_names, importer_commands

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


# Compose service -> the settings class its process reads.
SETTINGS: dict[str, type[ServiceSettings]] = {
    "ingestor": IngestorSettings,
    "normalizer": NormalizerSettings,
    "importer": ImporterSettings,
    "notifier": NotifierSettings,
    "api": ApiSettings,
}


def test_the_notifier_runs_as_its_own_process(capsys: pytest.CaptureFixture[str]) -> None:
    services = _compose()["services"]
    command = services["notifier"]["command"]
    assert command[:3] == ["python", "-m", "services.importer"]
    assert command[3] in importer_commands(capsys)
    assert command[3] == "notifier"
    # The worker runs the default command (worker) in a container of its own.
    assert services["importer"]["command"] == ["python", "-m", "services.importer"]


def test_dependencies_wait_for_health_or_for_bootstrap_to_finish() -> None:
    services = _compose()["services"]
    for name, spec in services.items():
        for dependency, rule in spec.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if dependency == "bootstrap":
                assert rule["condition"] == "service_completed_successfully"
            else:
                assert rule["condition"] == "service_healthy", f"{name} -> {dependency}"
                assert services[dependency]["healthcheck"]["test"]
    for name in SETTINGS:
        assert {"bootstrap", "kafka", "mongo", "s3"} <= set(services[name]["depends_on"])


def test_each_service_is_checked_on_the_port_it_listens_on() -> None:
    services = _compose()["services"]
    for name, settings in SETTINGS.items():
        spec = services[name]
        prefix = str(settings.model_config["env_prefix"])
        env = spec["environment"]
        assert env[f"{prefix}HTTP_HOST"] == "0.0.0.0"
        port = env[f"{prefix}HTTP_PORT"]
        check = " ".join(spec["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in check, name
    assert services["api"]["ports"] == [f"8000:{services['api']['environment']['API_HTTP_PORT']}"]


def test_every_variable_given_is_one_the_service_reads() -> None:
    services = _compose()["services"]
    for name, settings in SETTINGS.items():
        given = set(services[name]["environment"])
        assert given - env_names(settings) == set(), f"{name} is given variables it never reads"


def test_topics_are_never_auto_created() -> None:
    # A producer racing bootstrap would otherwise create events.canonical without compaction.
    kafka = _compose()["services"]["kafka"]["environment"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
