"""The notifier's delivery rules with a mocked transport and an in-memory delivery log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterable, Sequence

import httpx
import pytest

from services.importer.notifier import (
    Attempt,
    Backoff,
    DeadLetter,
    Notifier,
    Received,
    Stopping,
    WebhookDelivery,
)
from shared.contracts import Notification
from shared.mongo import Document


class MemoryLog:
    def __init__(self, known: Iterable[str] = ()) -> None:
        self.docs: dict[str, Document] = {k: {"_id": k} for k in known}

    async def by_ids(
        self, collection: str, ids: Iterable[str], fields: Sequence[str] | None = None
    ) -> dict[str, Document]:
        return {i: self.docs[i] for i in ids if i in self.docs}

    async def insert_new(self, collection: str, docs: Sequence[Document]) -> set[str]:
        existed = {d["_id"] for d in docs if d["_id"] in self.docs}
        self.docs.update({d["_id"]: d for d in docs})
        return existed


class Script:
    """A delivery that answers from a list, per notification id."""

    def __init__(self, answers: dict[str, list[Attempt]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, note: Notification, body: bytes) -> Attempt:
        self.calls.append(note.user_id)
        queue = self.answers[note.user_id]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def rec(note: Notification | bytes, offset: int = 0) -> Received:
    value = note if isinstance(note, bytes) else note.to_json_bytes()
    return Received(value, b"k", 0, offset)


def notifier(
    deliver: Script, log: MemoryLog, dead: list[DeadLetter], stop: asyncio.Event | None = None
) -> Notifier:
    async def dead_letters(letters: Sequence[DeadLetter]) -> None:
        dead.extend(letters)

    return Notifier(
        log, deliver, dead_letters, backoff=Backoff(0.001, 0.01, 4), concurrency=4,
        stop=stop or asyncio.Event(),
    )  # fmt: skip


FAIL = Attempt(ok=False, retry=True, error="HTTP 503")
OK = Attempt(ok=True)


async def test_retries_then_delivers_dead_letters_and_drops_duplicates() -> None:
    notes = {u: Notification(user_id=u, type="event.imported") for u in ("a", "b", "c", "d")}
    script = Script({
        "a": [FAIL, FAIL, OK],
        "b": [FAIL],
        "c": [Attempt(ok=False, retry=False, error="HTTP 404")],
        "d": [OK],
    })  # fmt: skip
    log = MemoryLog(known=[notes["d"].notification_id])  # d was delivered before
    dead: list[DeadLetter] = []
    records = [rec(n, i) for i, n in enumerate(notes.values())]
    out = await notifier(script, log, dead).process([*records, records[0], rec(b"{oops", 9)])
    assert out.delivered == 1
    assert out.duplicates == 2  # a second copy of a, and d from the delivery log
    assert script.calls.count("a") == 3
    assert script.calls.count("b") == 4  # max_attempts
    assert script.calls.count("c") == 1  # not retryable
    assert "d" not in script.calls
    assert sorted((d.record.offset, d.attempts) for d in dead) == [(1, 4), (2, 1), (9, 0)]
    assert notes["a"].notification_id in log.docs


async def test_stopping_mid_retry_leaves_the_batch_uncommitted() -> None:
    stop = asyncio.Event()
    note = Notification(user_id="a", type="event.imported")
    script = Script({"a": [FAIL]})
    dead: list[DeadLetter] = []
    task = asyncio.create_task(
        Notifier(
            MemoryLog(), script, lambda _l: asyncio.sleep(0), backoff=Backoff(5, 5, 10),
            concurrency=1, stop=stop,
        ).process([rec(note)])
    )  # fmt: skip
    await asyncio.sleep(0.05)
    stop.set()
    with pytest.raises(Stopping):
        await task
    assert dead == []


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, max_attempts=5)
    assert 0.5 <= backoff.delay(1) <= 1.0
    assert 2.0 <= backoff.delay(3) <= 4.0
    assert backoff.delay(10) <= 8.0
    assert backoff.delay(1, retry_after=6.0) == 6.0
    assert backoff.delay(1, retry_after=60.0) == 8.0


async def test_webhook_outcomes_and_signature() -> None:
    seen: list[httpx.Request] = []
    status = {"ok": 204, "busy": 503, "slow": 429, "bad": 422}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        user = request.read().decode().split('"user_id":"')[1].split('"')[0]
        if user == "down":
            raise httpx.ConnectError("refused")
        return httpx.Response(status[user], headers={"Retry-After": "2"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        hook = WebhookDelivery(client, "http://127.0.0.1:9/hook", secret="s3cr3t")
        got = {}
        for user in ("ok", "busy", "slow", "bad", "down"):
            note = Notification(user_id=user, type="event.imported", correlation_id="trace-7")
            got[user] = await hook(note, note.to_json_bytes())
    assert got["ok"] == Attempt(ok=True)
    assert (got["busy"].retry, got["slow"].retry, got["bad"].retry) == (True, True, False)
    assert got["slow"].retry_after == 2.0
    assert got["down"].retry
    assert "ConnectError" in got["down"].error
    first = seen[0]
    body = first.read()
    expected = hmac.new(b"s3cr3t", body, hashlib.sha256).hexdigest()
    assert first.headers["X-Marquee-Signature"] == f"sha256={expected}"
    assert first.headers["Idempotency-Key"].startswith(("n_", ""))
    assert first.headers["ce_type"] == "marquee.notification.v1"
    assert first.headers["X-Correlation-ID"] == "trace-7"
