"""Start the provider sandbox as a real HTTP server for tests, and point settings at it."""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from deploy.sandbox.credentials import client_env

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running_sandbox(*args: str, events: int = 3000, seed: int = 7) -> Iterator[str]:
    """Yields the sandbox's base URL (``http://127.0.0.1:PORT``) while it runs."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploy.sandbox",
            "--port",
            "0",
            "--seed",
            str(seed),
            "--events",
            str(events),
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 120
    url = None
    try:
        while url is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox did not start (exit {proc.returncode})")
            if selector.select(timeout=1):
                line = proc.stdout.readline()
                if line.startswith("sandbox listening on "):
                    url = line.split()[-1].rstrip("/")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sandbox_env(base: str) -> dict[str, str]:
    """Provider settings aimed at the sandbox, with no client-side rate limit (tests)."""
    rates = {f"{p}_RATE_PER_S": "0" for p in ("TICKETMASTER", "SEATGEEK", "EVENTBRITE", "MEETUP")}
    return {**client_env(base), **rates, "SPOTIFY_RATE_PER_S": "0"}


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
