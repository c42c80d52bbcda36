"""Composition root of the normalizer: runs the faust worker (services/normalizer/app.py)."""

from __future__ import annotations

import sys


def run() -> int:
    from services.normalizer.app import app

    # One worker process; faust reads its command line like the `faust` CLI would.
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()
    return 0
