"""Packaging: a fresh install prints no deprecation walls (SPDX licence, pinned backend)."""

from __future__ import annotations

import tomllib

from tests.stack import ROOT


def test_licence_is_spdx_and_the_build_backend_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    [backend] = project["build-system"]["requires"]
    assert backend.startswith("setuptools==")
    major = int(backend.removeprefix("setuptools==").split(".")[0])
    assert major >= 77  # the first that reads a licence given as an SPDX string
