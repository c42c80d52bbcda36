"""Composition root of the normalizer: the faust worker, or ``replay-dlq``."""

from __future__ import annotations

import argparse
import asyncio
import sys


def run() -> int:
    parser = argparse.ArgumentParser(prog="python -m services.normalizer")
    parser.add_argument("command", nargs="?", default="worker", choices=["worker", "replay-dlq"])
    parser.add_argument("--max", type=int, default=None, help="replay at most this many")
    args = parser.parse_args()
    if args.command == "replay-dlq":
        from services.normalizer.replay import replay_dlq
        from shared.settings import NormalizerSettings, load

        sent = asyncio.run(replay_dlq(load(NormalizerSettings), limit=args.max))
        print(f"replayed {sent} dead-lettered records to the input topic")
        return 0
    from services.normalizer.app import app

    # One worker process; faust reads its command line like the `faust` CLI would.
    # No faust web server: health and metrics are served by our own (NORMALIZER_HTTP_PORT).
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    try:
        app.main()
    finally:
        # faust logs at warning level: say plainly that the worker is gone, and why.
        print("normalizer stopped", file=sys.stderr, flush=True)
    return 0
