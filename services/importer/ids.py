"""Deterministic identifiers: a retried write or emit produces the same id, never a second one."""

from __future__ import annotations

import hashlib


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def local_event_id(claim_id: str) -> str:
    """The local event created for a claim: one claim, one local event, whatever is retried."""
    return f"le_{_digest(claim_id)}"


def notification_id(*parts: str) -> str:
    """A notification id from what it is about, so the notifier can drop re-emitted copies."""
    return f"n_{_digest(*parts)}"


def invalid_request_id(value: bytes) -> str:
    """A stable id for a request so broken that it names none (same bytes, same result)."""
    return f"invalid-{hashlib.sha256(value).hexdigest()[:24]}"


def revival_id(claim_id: str, generation: int) -> str:
    """The insert-only gate of the ``generation``-th forced re-import of a dismissed claim."""
    return f"{claim_id}#{generation}"
