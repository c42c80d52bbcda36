"""Named crash points for the crash-recovery tests: exit at once, as a ``kill -9`` would."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

Failpoint = Callable[[str], None]

# Where the importer can be told to die (IMPORTER_FAILPOINT); each is a gap between two writes.
POINTS = frozenset({"after-claims", "after-local-events", "after-results", "after-emit"})


def no_failpoint(name: str) -> None:
    """Production: nothing happens."""


def failpoint(armed: str | None) -> Failpoint:
    """A hook that ends the process abruptly when it reaches ``armed`` (no cleanup, no flush)."""
    if armed is None:
        return no_failpoint
    if armed not in POINTS:
        raise ValueError(f"unknown failpoint {armed!r}; known: {', '.join(sorted(POINTS))}")

    def hit(name: str) -> None:
        if name == armed:
            log.warning("failpoint %s reached: exiting abruptly", name)
            logging.shutdown()
            os._exit(137)

    return hit
