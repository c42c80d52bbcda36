"""CLI: ``python -m deploy.sandbox --port 18765 --seed 42 --events 2000``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import fields
from datetime import datetime

import uvicorn

from deploy.sandbox.app import create_app
from deploy.sandbox.control import Limits
from deploy.sandbox.world import DEFAULT_START, World


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("--start needs a zone, e.g. 2026-11-23T00:00:00Z")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--start", type=_aware, default=DEFAULT_START)
    defaults = Limits()
    for f in fields(Limits):
        # Every limit knob is also a flag, e.g. --tm-daily-quota 100 (0 switches it off).
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=int if f.type == "int" else float,
            default=getattr(defaults, f.name),
        )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    world = World(seed=args.seed, events=args.events, start=args.start)
    built = time.perf_counter() - t0
    limits = Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})
    app = create_app(world, limits)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # surfaces the bind error
            raise SystemExit(1)
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(
        f"world: {len(world.perfs)} performances, seed {args.seed}, built in {built:.2f}s",
        file=sys.stderr,
    )
    print(f"sandbox listening on http://{args.host}:{port}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
