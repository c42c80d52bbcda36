"""Entry point: ``python -m services.normalizer``."""

from __future__ import annotations

from services.normalizer.main import run

raise SystemExit(run())
