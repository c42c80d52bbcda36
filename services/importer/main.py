"""Composition root of the importer: reads settings, wires clients, runs until stopped.

Placeholder until its issue lands: it starts, serves /healthz, /readyz (Kafka and MongoDB
answer) and /metrics on ``IMPORTER_HTTP_PORT``, and does no importer work yet.
"""

from __future__ import annotations

from shared.service import run_placeholder
from shared.settings import ImporterSettings


def run() -> int:
    return run_placeholder("importer", ImporterSettings())
