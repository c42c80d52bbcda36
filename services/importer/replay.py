"""``notifier-replay-dlq``: feed dead-lettered notifications back once the webhook is fixed."""

from __future__ import annotations

from shared.kafka import replay_dead_letters
from shared.settings import NotifierSettings


async def replay_dlq(settings: NotifierSettings, *, limit: int | None = None) -> int:
    """Re-send the DLQ's notifications (same key and value) to the notifications topic.

    Its own consumer group remembers how far replay got (``replay_dead_letters``). Delivered
    ids are still dropped by the notifier, so a notification that made it after all is not
    sent twice.
    """
    return await replay_dead_letters(
        settings.kafka,
        dlq_topic=settings.dlq_topic,
        target_topic=settings.notifications_topic,
        group_id=f"{settings.group_id}-dlq-replay",
        limit=limit,
    )
