"""Entry point: ``python -m services.importer``."""

from __future__ import annotations

from services.importer.main import run

raise SystemExit(run())
