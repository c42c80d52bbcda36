"""Composition root of the ingestor: reads settings, wires clients, runs until stopped.

Placeholder until its issue lands: it starts, serves /healthz, /readyz (Kafka and MongoDB
answer) and /metrics on ``INGESTOR_HTTP_PORT``, and does no ingestor work yet.
"""

from __future__ import annotations

from shared.service import run_placeholder
from shared.settings import IngestorSettings


def run() -> int:
    return run_placeholder("ingestor", IngestorSettings())
