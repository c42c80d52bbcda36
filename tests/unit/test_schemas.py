"""The committed JSON Schemas match the code; a change without a version bump is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.contracts import schemas
from shared.contracts.messages import Notification


def test_committed_schemas_are_current() -> None:
    assert schemas.problems(schemas.DEFAULT_DIR) == []


def test_every_contract_has_a_distinct_schema_file() -> None:
    names = [schemas.file_name(model) for model in schemas.ALL_CONTRACTS]
    assert len(names) == len(set(names))


class _NotificationWithExtraField(Notification):
    """A notification."""

    schema_name = "notification"
    priority: int = 0


def test_changed_contract_without_bump_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas.write(tmp_path)
    assert schemas.problems(tmp_path) == []
    changed = tuple(
        _NotificationWithExtraField if m is Notification else m for m in schemas.ALL_CONTRACTS
    )
    monkeypatch.setattr(schemas, "ALL_CONTRACTS", changed)
    [problem] = schemas.problems(tmp_path)
    assert "notification.v1.json" in problem
    assert "without a version bump" in problem

    # Bumping the version asks for the new file instead; writing it settles everything.
    monkeypatch.setattr(_NotificationWithExtraField, "schema_version", 2)
    [problem] = schemas.problems(tmp_path)
    assert "notification.v2.json: missing" in problem
    schemas.write(tmp_path)
    assert schemas.problems(tmp_path) == []
    assert (tmp_path / "notification.v1.json").exists()


def test_reworded_description_is_not_a_new_version(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    path = tmp_path / schemas.file_name(Notification)
    path.write_text(path.read_text().replace("Something to tell a user", "Tell a user"))
    [problem] = schemas.problems(tmp_path)
    assert "descriptions changed" in problem


def test_check_command_exit_code(tmp_path: Path) -> None:
    assert schemas.main(["--check", "--dir", str(tmp_path)]) == 1
    assert schemas.main(["--dir", str(tmp_path)]) == 0
    assert schemas.main(["--check", "--dir", str(tmp_path)]) == 0
