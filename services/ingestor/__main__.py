"""Entry point: ``python -m services.ingestor``."""

from __future__ import annotations

from services.ingestor.main import run

raise SystemExit(run())
