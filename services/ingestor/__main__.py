"""Entry point: ``python -m services.ingestor [serve|ingest|backfill|replay]``."""

from __future__ import annotations

from services.ingestor.cli import main

raise SystemExit(main())
