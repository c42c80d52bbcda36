"""``replay-dlq``: feed dead-lettered raw records back to the normalizer after a fix."""

from __future__ import annotations

from shared.kafka import replay_dead_letters
from shared.settings import NormalizerSettings


async def replay_dlq(settings: NormalizerSettings, *, limit: int | None = None) -> int:
    """Re-send the DLQ's records (same key and value) to the input topic; returns the count.

    A consumer group of its own remembers how far replay got, so running it twice re-sends
    nothing twice; a record that fails again waits for the next run (``replay_dead_letters``).
    """
    return await replay_dead_letters(
        settings.kafka,
        dlq_topic=settings.dlq_topic,
        target_topic=settings.input_topic,
        group_id=f"{settings.app_id}-dlq-replay",
        limit=limit,
    )
