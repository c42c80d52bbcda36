"""The local stack script: port choice, pid ownership, endpoints (no servers started)."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "stack_under_test", ROOT / "deploy/local/stack.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


stack = _load()


def test_busy_override_port_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("MARQUEE_KAFKA_PORT", str(port))
        with pytest.raises(stack.StackError, match=f"MARQUEE_KAFKA_PORT={port}.*busy"):
            stack.choose_port("kafka", "port", None)


def test_previous_port_reused_when_free_else_replaced() -> None:
    free = stack.free_port()
    assert stack.choose_port("mongo", "port", free) == free
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert stack.choose_port("mongo", "port", taken) != taken


def test_ours_checks_the_exact_command() -> None:
    me = [Path(f"/proc/{os.getpid()}/cmdline").read_bytes().split(b"\0")[0].decode()]
    assert stack.ours(os.getpid(), ["/bin/definitely-not-this"]) is False
    assert stack.ours(os.getpid(), None) is False
    assert stack.ours(2**22 + 7, me) is False


def test_endpoints_from_state() -> None:
    state = {"kafka": {"port": 1}, "mongo": {"port": 2}, "s3": {"port": 3}}
    assert stack.endpoints(state) == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "MONGO_URL": "mongodb://127.0.0.1:2/",
        "S3_ENDPOINT_URL": "http://127.0.0.1:3",
    }


def test_unknown_component_rejected() -> None:
    with pytest.raises(stack.StackError, match="unknown component"):
        stack.select(["zookeeper"])


def test_kafka_and_mongo_files_live_in_the_given_run_dir(tmp_path: Path) -> None:
    run = stack.RunDir(tmp_path / "run")
    ports = {"port": 1, "controller": 2}
    kafka = " ".join(stack.kafka_command(ports, run))
    assert f"-Dkafka.logs.dir={run.logs}" in kafka
    assert str(run.kafka / "server.properties") in kafka
    assert str(stack.DEFAULT_RUN.root) not in kafka
    mongo = stack.mongo_command({"port": 3}, run)
    assert mongo[mongo.index("--storage-path") + 1] == str(tmp_path / "run" / "mongo" / "data")
    # Durable journaled writes, a capped cache, and no config file searched for elsewhere.
    assert "--sync-on-commit" in mongo
    assert mongo[mongo.index("--cache-size") + 1] == "2G"
    assert (run.mongo / "secantusd.toml").exists()
    # Without one, the layout `./marquee up` has always used.
    assert stack.DEFAULT_RUN.root == stack.CACHE / "run"
    assert f"-Dkafka.logs.dir={stack.CACHE / 'run' / 'logs'}" in stack.kafka_command(ports)


def test_up_status_down_keep_to_the_given_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A private stack's pid, state and log files, never the shared one's."""
    run = stack.RunDir(tmp_path / "run")
    sleeper = stack.Component(
        "sleeper",
        ("port",),
        lambda run: None,
        lambda ports, run: [sys.executable, "-c", "import time; time.sleep(60)"],
        lambda ports: None,
    )
    monkeypatch.setitem(stack.COMPONENTS, "sleeper", sleeper)
    shared_pidfile = sleeper.pidfile(stack.DEFAULT_RUN)
    assert not shared_pidfile.exists()
    try:
        assert stack.cmd_up(["sleeper"], run) == 0
        pid = int((run.root / "sleeper.pid").read_text())
        assert stack.status_of(sleeper, stack.load_state(run), run) == ("running", pid)
        assert (run.logs / "sleeper.log").exists()
        assert stack.load_state(run)["sleeper"]["pid"] == pid
        assert "sleeper" not in stack.load_state()  # the shared stack's state is untouched
        assert not shared_pidfile.exists()
    finally:
        stack.cmd_down(["sleeper"], False, run)
    assert stack.status_of(sleeper, stack.load_state(run), run) == ("stopped", None)
    assert not stack.pid_alive(pid)
    assert "sleeper" in capsys.readouterr().out


def test_mongo_server_is_pinned_and_built_outside_the_clone() -> None:
    assert stack.SECANTUS_VERSION == "0.5.3-beta.196"
    assert stack.SECANTUS_BIN.name == "secantusd-rs"
    assert not stack.SECANTUS_BIN.is_relative_to(ROOT)  # shared by every clone on the machine


def test_missing_cargo_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "TOOLS", tmp_path)
    monkeypatch.setattr(stack, "SECANTUS_ROOT", tmp_path / "secantus")
    monkeypatch.setattr(stack, "SECANTUS_BIN", tmp_path / "secantus" / "bin" / "secantusd-rs")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(stack.StackError, match="built with cargo, which is not on PATH"):
        stack.build_mongo(stack.RunDir(tmp_path / "run"))


def test_failed_build_names_its_log(tmp_path: Path) -> None:
    run = stack.RunDir(tmp_path / "run")
    with pytest.raises(stack.StackError, match=f"log: {run.logs / 'build-false.log'}"):
        stack.run_build(["false"], cwd=tmp_path, env=None, what="false thing", run=run)


def test_kafka_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # uuid4 bytes whose base64 starts with "-" (0xf8 -> "-" in the urlsafe alphabet) come first.
    draws = iter([bytes([0xF8]) + bytes(15), bytes([0x10]) + bytes(15)])

    class Fake:
        def __init__(self, raw: bytes) -> None:
            self.bytes = raw

    monkeypatch.setattr(stack.uuid, "uuid4", lambda: Fake(next(draws)))
    cluster_id = stack.kafka_cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22
