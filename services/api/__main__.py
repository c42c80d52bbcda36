"""Entry point: ``python -m services.api``."""

from __future__ import annotations

from services.api.main import run

raise SystemExit(run())
