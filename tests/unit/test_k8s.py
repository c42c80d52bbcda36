"""deploy/k8s: every manifest is listed, probed, sized, configured from env and scaled."""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from shared.settings import (
    ApiSettings,
    ImporterSettings,
    IngestorSettings,
    NormalizerSettings,
    NotifierSettings,
    ServiceSettings,
    is_placeholder,
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"

# Deployment -> (settings class, [(group id field, topic field)] it consumes in a group).
SERVICES: dict[str, tuple[type[ServiceSettings], list[tuple[str, str]]]] = {
    "ingestor": (IngestorSettings, [("group_id", "requests_topic")]),
    "normalizer": (NormalizerSettings, [("app_id", "input_topic")]),
    "importer": (
        ImporterSettings,
        [
            ("group_id", "requests_topic"),
            ("updates_group_id", "changes_topic"),
            ("hooks_group_id", "changes_topic"),
        ],
    ),
    "notifier": (NotifierSettings, [("group_id", "notifications_topic")]),
    "api": (ApiSettings, []),
}


@functools.cache
def _load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _kustomization() -> dict[str, Any]:
    [doc] = _load("kustomization.yaml")
    return doc


def _objects() -> list[dict[str, Any]]:
    return [obj for name in _kustomization()["resources"] for obj in _load(name)]


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in _objects() if o["kind"] == kind}


def _config() -> dict[str, str]:
    data: dict[str, str] = _of_kind("ConfigMap")["marquee-config"]["data"]
    return data


def env_names(settings: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads, nested blocks included."""
    own = str(settings.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for name, info in settings.model_fields.items():
        factory = info.default_factory
        if isinstance(factory, type) and issubclass(factory, BaseSettings):
            names |= env_names(factory)
            continue
        alias = info.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names |= {str(a).upper() for a in alias.choices}
        else:
            names.add(f"{own}{name}".upper())
    return names


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _secret_keys() -> dict[str, set[str]]:
    return {
        name: set(secret.get("stringData") or {}) for name, secret in _of_kind("Secret").items()
    }


def test_kustomization_lists_every_manifest_and_only_existing_ones() -> None:
    listed = _kustomization()["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk
    assert len(listed) == len(set(listed))
    assert {i["name"] for i in _kustomization()["images"]} == {"marquee"}


def test_a_deployment_per_service_running_an_existing_module() -> None:
    deployments = _of_kind("Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        [main] = deployment["spec"]["template"]["spec"]["containers"]
        command = main["command"]
        assert command[:2] == ["python", "-m"]
        assert importlib.util.find_spec(command[2]) is not None, command
        assert main["image"] == "marquee"
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert name in command[2] or name in command[3:], f"{name} runs {command}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_probes_hit_the_port_the_service_listens_on(name: str) -> None:
    settings, _ = SERVICES[name]
    prefix = str(settings.model_config["env_prefix"])
    [main] = _of_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    env = {e["name"]: e["value"] for e in main["env"]}
    # The service binds where its settings say: all interfaces, on the exposed port.
    assert env[f"{prefix}HTTP_HOST"] == "0.0.0.0"
    assert int(env[f"{prefix}HTTP_PORT"]) in ports.values()
    expected = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    for probe, path in expected.items():
        get = main[probe]["httpGet"]
        assert get["path"] == path, f"{name} {probe}"
        port = get["port"]
        assert (ports[port] if isinstance(port, str) else port) == int(env[f"{prefix}HTTP_PORT"])
    annotations = _of_kind("Deployment")[name]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == env[f"{prefix}HTTP_PORT"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_every_container_has_requests_and_limits_and_runs_locked_down() -> None:
    workloads = [*_of_kind("Deployment").values(), *_of_kind("Job").values()]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        mounts = {v["name"] for v in pod.get("volumes", [])}
        for container in _containers(workload):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert set(resources[kind]) == {"cpu", "memory"}, container["name"]
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in mounts


def test_config_comes_from_the_configmap_and_secrets_that_exist() -> None:
    secrets = _secret_keys()
    workloads = [*_of_kind("Deployment").values(), *_of_kind("Job").values()]
    for workload in workloads:
        for container in _containers(workload):
            sources = container["envFrom"]
            assert sources[0] == {"configMapRef": {"name": "marquee-config"}}
            # The shared Secret comes after the ConfigMap, so a MONGO_URL moved there wins.
            assert sources[1] == {"secretRef": {"name": "marquee-secrets"}}
            for source in sources[1:]:
                assert source["secretRef"]["name"] in secrets


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_variable_set_is_one_the_service_reads(name: str) -> None:
    settings, _ = SERVICES[name]
    known = env_names(settings)
    secrets = _secret_keys()
    [main] = _of_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    given = set(_config()) | {e["name"] for e in main.get("env", [])}
    for source in main["envFrom"][1:]:
        given |= secrets[source["secretRef"]["name"]]
    assert given - known == set(), f"{name} is given variables it never reads"


def test_secrets_hold_placeholders_only() -> None:
    secrets = _of_kind("Secret")
    assert "marquee-secrets" in secrets
    for name, secret in secrets.items():
        assert "data" not in secret, f"{name}: use stringData placeholders, not encoded values"
        for key, value in (secret.get("stringData") or {}).items():
            assert is_placeholder(value), f"{name}.{key} looks like a real value"
    # Every credential a service refuses to run with as a placeholder has a slot here.
    slots = set().union(*_secret_keys().values())
    assert {"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "API_JWT_SECRET"} <= slots
    assert {"TICKETMASTER_API_KEY", "EVENTBRITE_TOKEN", "SPOTIFY_CLIENT_SECRET"} <= slots


def test_configmap_points_every_service_at_the_same_servers() -> None:
    config = _config()
    assert config["MARQUEE_ENV"] in {"staging", "prod"}
    for key in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "MONGO_URL",
        "S3_ENDPOINT_URL",
        "KAFKA_TOPIC_PARTITIONS",
    ):
        assert config[key]
    assert all(isinstance(v, str) for v in config.values()), "ConfigMap values must be strings"


@pytest.mark.parametrize("name", ["ingestor", "normalizer", "importer", "notifier"])
def test_every_consumer_scales_on_the_lag_of_its_own_groups(name: str) -> None:
    settings, groups = SERVICES[name]
    scaled = _of_kind("ScaledObject")[name]
    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    partitions = int(_config()["KAFKA_TOPIC_PARTITIONS"])
    spec = scaled["spec"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    expected = {
        (
            settings.model_fields[group].default,
            settings.model_fields[topic].default,
        )
        for group, topic in groups
    }
    triggers = spec["triggers"]
    assert {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers} == expected
    for trigger in triggers:
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        assert metadata["bootstrapServers"] == _config()["KAFKA_BOOTSTRAP_SERVERS"]
        # The CRD's trigger metadata is a map of strings: a bare number is refused.
        assert all(isinstance(v, str) for v in metadata.values())
        assert int(metadata["lagThreshold"]) > 0


def test_the_normalizer_scales_to_the_partition_count() -> None:
    spec = _of_kind("ScaledObject")["normalizer"]["spec"]
    assert spec["maxReplicaCount"] == int(_config()["KAFKA_TOPIC_PARTITIONS"])


def test_the_api_is_a_service_with_a_cpu_autoscaler() -> None:
    service = _of_kind("Service")["api"]
    [main] = _of_kind("Deployment")["api"]["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"] for p in main["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    labels = _of_kind("Deployment")["api"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    hpa = _of_kind("HorizontalPodAutoscaler")["api"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "api",
    }
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2


def test_no_deployment_is_scaled_twice() -> None:
    targets = [s["spec"]["scaleTargetRef"]["name"] for s in _of_kind("ScaledObject").values()]
    targets += [
        h["spec"]["scaleTargetRef"]["name"] for h in _of_kind("HorizontalPodAutoscaler").values()
    ]
    assert sorted(targets) == sorted(_of_kind("Deployment"))


def test_topics_and_indexes_exist_before_any_service_starts() -> None:
    [job] = _of_kind("Job").values()
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "shared.bootstrap"]
    for name, deployment in _of_kind("Deployment").items():
        init = deployment["spec"]["template"]["spec"]["initContainers"]
        assert [c["command"] for c in init] == [["python", "-m", "shared.bootstrap"]], name


def importer_commands(capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The subcommands ``python -m services.importer`` accepts, from its own parser."""
    from services.importer.main import run

    with pytest.raises(SystemExit):
        run(["no-such-command"])
    error = capsys.readouterr().err
    assert "invalid choice" in error
    return set(re.findall(r"'([a-z-]+)'", error.split("choose from", 1)[1]))


def test_subcommands_are_ones_the_modules_accept(capsys: pytest.CaptureFixture[str]) -> None:
    from services.ingestor.cli import parser

    accepted = importer_commands(capsys)
    assert {"worker", "notifier"} <= accepted
    for deployment in _of_kind("Deployment").values():
        [main] = deployment["spec"]["template"]["spec"]["containers"]
        module, args = main["command"][2], main["command"][3:]
        if module == "services.importer":
            assert args[0] in accepted
        elif module == "services.ingestor":
            assert parser().parse_args(args).command == "serve"
        else:
            assert args == []
