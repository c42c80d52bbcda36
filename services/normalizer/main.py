"""Composition root of the normalizer: reads settings, wires clients, runs until stopped.

Placeholder until its issue lands: it starts, serves /healthz, /readyz (Kafka and MongoDB
answer) and /metrics on ``NORMALIZER_HTTP_PORT``, and does no normalizer work yet.
"""

from __future__ import annotations

from shared.service import run_placeholder
from shared.settings import NormalizerSettings


def run() -> int:
    return run_placeholder("normalizer", NormalizerSettings())
