"""Provider call statistics (calls, errors, latency) kept in MongoDB for the API's analytics."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.ingestor.errors import Action, Outcome
from shared.contracts import Provider
from shared.contracts.base import utc_now
from shared.mongo import Document

PROVIDER_STATS = "provider_stats"
# Latencies kept per provider for the percentiles: the recent calls, not all time.
WINDOW = 1_000


@dataclass
class Tally:
    calls: int = 0
    errors: int = 0
    throttled: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))


@dataclass
class ProviderStats:
    """Counts each provider's calls as they happen; ``save`` adds them to ``provider_stats``.

    A document per provider (``_id``: provider name) holds running totals (``$inc``, so
    several ingestor processes add up), the success rate over all calls, and p50 / p95
    latency of the last run's calls.
    """

    tallies: dict[Provider, Tally] = field(default_factory=dict)

    def observe(
        self,
        provider: Provider,
        url: str,
        status: int | None,
        outcome: Outcome,
        left: int | None,
        seconds: float,
    ) -> None:
        tally = self.tallies.setdefault(provider, Tally())
        tally.calls += 1
        if outcome.action is not Action.OK and outcome.action is not Action.IGNORE:
            tally.errors += 1
        if outcome.action in (Action.RATE_LIMITED, Action.QUOTA_SPENT):
            tally.throttled += 1
        if status is not None:
            tally.latencies_ms.append(seconds * 1000)

    async def save(self, db: AsyncDatabase[Document]) -> None:
        if not self.tallies:
            return
        now = utc_now()
        ops = []
        for provider, tally in self.tallies.items():
            latency = sorted(tally.latencies_ms)
            ops.append(
                UpdateOne(
                    {"_id": provider.value},
                    {
                        "$inc": {
                            "calls": tally.calls,
                            "errors": tally.errors,
                            "throttled": tally.throttled,
                        },
                        "$set": {
                            "latency_ms": {
                                "p50": round(statistics.median(latency), 1) if latency else None,
                                "p95": round(_p95(latency), 1) if latency else None,
                            },
                            "last_run": {"calls": tally.calls, "errors": tally.errors},
                            "updated_at": now,
                        },
                    },
                    upsert=True,
                )
            )
        await db[PROVIDER_STATS].bulk_write(ops, ordered=False)
        # success_rate needs the new totals: computed from what is stored now.
        async for doc in db[PROVIDER_STATS].find({"_id": {"$in": [p.value for p in self.tallies]}}):
            calls = int(doc.get("calls") or 0)
            rate = (calls - int(doc.get("errors") or 0)) / calls if calls else None
            await db[PROVIDER_STATS].update_one(
                {"_id": doc["_id"]}, {"$set": {"success_rate": rate}}
            )
        self.tallies.clear()


def _p95(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
