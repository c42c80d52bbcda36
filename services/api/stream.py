"""Server-Sent Events over the change feed: one poller per API process, fanned out in memory.

The stream is a tail of the store's own change feed (``Catalogue.changes``: canonical events in
``(updated_at, _id)`` order on the ``change_feed`` index), not a broker. One ``Hub`` per process
polls it every ``API_STREAM_POLL_S`` up to ``now - API_STREAM_SETTLE_S`` and puts each change,
serialised once, into the bounded queue of every connected subscriber whose filters match.

Positions are keys ``(epoch ms, _id)``, the order of the feed, and an event's SSE ``id`` is its
feed cursor (``encode_cursor``, as ``next_after``). A subscriber that resumes (``Last-Event-ID``
or ``after``) registers first, then reads the store from its cursor up to the hub's position at
that moment, then takes the live changes queued meanwhile: every change past its cursor once.

A change committed later than the settle window, with a modification time behind the hub's
position (a normalizer batch stamps ``updated_at`` before its bulk write lands), is found by a
sweep of the last ``API_STREAM_LOOKBACK_S`` behind the position (key-only reads, every second)
and sent then, out of feed order, with the subscriber's latest position as its ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pymongo.errors import PyMongoError
from starlette.types import Receive, Scope, Send

from services.api.auth import Principal
from services.api.catalogue import Catalogue, distance_km
from services.api.errors import ApiError, field_error
from services.api.params import (
    decode_cursor,
    encode_cursor,
    from_ms,
    instant_ms,
    read_filters,
    validated,
)
from services.api.render import change_item, dumps
from shared.mongo import EVENTS, Document
from shared.settings import ApiSettings

log = logging.getLogger(__name__)

# A position: (epoch milliseconds, _id). An instant with no id sorts after every id at it.
Key = tuple[int, str]
AFTER_ALL_IDS = "\x7f"  # above every character a cursor's id may hold ([!-~])
BATCH = 500
SWEEP_EVERY_S = 1.0
STREAM_PARAMETERS = ("source", "category", "near", "after")


def key_of(doc: Document) -> Key:
    return instant_ms(doc["updated_at"]), str(doc["_id"])


def cursor_of(key: Key) -> str | None:
    """The feed cursor of a change's key (None for a bare instant)."""
    if key[1] == AFTER_ALL_IDS:
        return None
    return encode_cursor((from_ms(key[0]), key[1]))


def feed_position(key: Key) -> tuple[datetime, str | None]:
    """What ``Catalogue.changes`` takes as ``after`` for this key."""
    return from_ms(key[0]), None if key[1] == AFTER_ALL_IDS else key[1]


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """Which changes a subscriber gets: the listings' source, category and circle filters."""

    source: str | None = None
    categories: frozenset[str] = frozenset()
    center: tuple[float, float] | None = None
    radius_km: float | None = None

    def matches(self, doc: Document) -> bool:
        if self.source is not None and not any(
            isinstance(s, Mapping) and s.get("source") == self.source
            for s in doc.get("sources") or []
        ):
            return False
        if self.categories and not (
            str(doc.get("category") or "").casefold() in self.categories
            or str(doc.get("subcategory") or "").casefold() in self.categories
        ):
            return False
        if self.center is not None and self.radius_km is not None:
            return distance_km(self.center, doc) <= self.radius_km
        return True


def read_stream_params(params: Mapping[str, str]) -> tuple[StreamFilter, Key | None]:
    """The filters (parsed and refused exactly as the listings do: 422 for a malformed
    ``near``, 400 for an unknown source) and the resume cursor ``after``."""
    unknown = sorted(set(params) - set(STREAM_PARAMETERS))
    if unknown:
        raise ApiError(
            400,
            "Invalid request",
            details=[field_error(n, "not a parameter of the stream") for n in unknown],
        )
    filters, read = read_filters(params)
    after = read.text("after", max_length=400)
    validated(read)
    query = filters.query(None)
    resume = None
    if after is not None:
        text = after.strip()
        value, last_id = decode_cursor(text, "after", instant=True)
        resume = (instant_ms(value), last_id)
    categories = frozenset(c.casefold() for c in query.categories)
    return StreamFilter(query.source, categories, query.center, query.radius_km), resume


def resume_key(last_event_id: str | None, params_after: Key | None) -> Key | None:
    """``Last-Event-ID`` (a reconnecting EventSource sends it) wins over ``?after=``."""
    if last_event_id is None or not last_event_id.strip():
        return params_after
    try:
        value, last_id = decode_cursor(last_event_id.strip(), "Last-Event-ID", instant=True)
    except ApiError as err:
        raise ApiError(
            400,
            "Invalid request",
            details=[field_error("header.Last-Event-ID", "an id this stream sent")],
        ) from err
    return instant_ms(value), last_id


@dataclass(slots=True)
class Change:
    """One change, serialised once for every subscriber."""

    key: Key
    doc: Document
    data: bytes
    late: bool = False


@dataclass(eq=False)
class Subscriber:
    filters: StreamFilter
    queue: asyncio.Queue[Change]
    last: Key  # the latest position this subscriber has been given (or joined at)
    floor: Key | None  # resumed from here (None: joined live, at ``last``)
    caught_up: set[Key] = field(default_factory=set)  # sent by the catch-up near the join
    overflowed: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def wants_late(self, change: Change) -> bool:
        if change.key in self.caught_up:
            return False
        return self.floor is None or change.key > self.floor


class Full(Exception):
    """The process holds ``API_STREAM_MAX_CLIENTS`` streams already."""


class Hub:
    """The one poller of a process and its subscribers."""

    def __init__(
        self,
        catalogue: Catalogue,
        settings: ApiSettings,
        *,
        on_delivered: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[str], None] = lambda reason: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.catalogue = catalogue
        self.poll_s = settings.stream_poll_s
        self.settle = timedelta(seconds=settings.stream_settle_s)
        self.lookback_ms = int(settings.stream_lookback_s * 1000)
        self.max_clients = settings.stream_max_clients
        self.queue_size = settings.stream_queue
        self.heartbeat_s = settings.stream_heartbeat_s
        self.retry_ms = settings.stream_retry_ms
        self.on_delivered = on_delivered
        self.on_dropped = on_dropped
        self.clock = clock
        self.subscribers: set[Subscriber] = set()
        self.position: Key | None = None  # None until the first poll placed it
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        # Keys sent in the lookback window behind the position (so a sweep finds only new ones).
        self.recent: dict[Key, None] = {}
        self._last_sweep = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None  # set by run (shutdown signals)

    # --- subscribers ----------------------------------------------------------------------

    def subscribe(self, filters: StreamFilter, resume: Key | None) -> Subscriber:
        if len(self.subscribers) >= self.max_clients:
            raise Full
        assert self.position is not None
        sub = Subscriber(
            filters,
            asyncio.Queue(self.queue_size),
            last=max(self.position, resume) if resume is not None else self.position,
            floor=resume,
        )
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def _fan_out(self, changes: list[Change]) -> None:
        """Synchronous: no subscriber joins halfway through a batch."""
        for sub in list(self.subscribers):
            if sub.overflowed:
                continue
            for change in changes:
                if not change.late and change.key <= sub.last:
                    continue
                if change.late and not sub.wants_late(change):
                    continue
                if not sub.filters.matches(change.doc):
                    continue
                try:
                    sub.queue.put_nowait(change)
                except asyncio.QueueFull:
                    sub.overflowed = True
                    self.on_dropped("slow")
                    break

    # --- the poller -----------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until stopped; a store error is logged and retried (subscribers stay)."""
        self.loop = asyncio.get_running_loop()
        failures = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                await self.poll()
                failures = 0
            except PyMongoError as err:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("change stream poll failed (%d in a row): %s", failures, err)
            wait = self.poll_s * (1 if failures == 0 else min(10, 2**failures))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.stopping.wait(), max(0.0, wait - (time.monotonic() - started))
                )

    async def poll(self) -> None:
        head = self.clock() - self.settle
        if self.position is None:
            self.position = (instant_ms(head), AFTER_ALL_IDS)
            await self._remember_window()
            self.ready.set()
            return
        while True:
            docs, more = await self.catalogue.changes(feed_position(self.position), BATCH, head)
            changes = [Change(key_of(d), d, dumps(change_item(d))) for d in docs]
            if changes:
                self.position = changes[-1].key
                for change in changes:
                    self.recent[change.key] = None
                self._fan_out(changes)
            if not more:
                break
        # Nothing left up to ``head``: the position is that instant (the next read starts there).
        at_head: Key = (instant_ms(head), AFTER_ALL_IDS)
        if at_head > self.position:
            self.position = at_head
        if self.lookback_ms and time.monotonic() - self._last_sweep >= SWEEP_EVERY_S:
            self._last_sweep = time.monotonic()
            await self.sweep()

    async def _window_keys(self) -> list[Key]:
        assert self.position is not None
        low = from_ms(self.position[0] - self.lookback_ms)
        found = {"updated_at": {"$gte": low, "$lte": from_ms(self.position[0])}}
        rows = self.catalogue.db[EVENTS].find(found, {"updated_at": 1})
        return [key_of(doc) async for doc in rows]

    async def _remember_window(self) -> None:
        position = self.position
        if self.lookback_ms and position is not None:
            self.recent = dict.fromkeys(k for k in await self._window_keys() if k <= position)

    async def sweep(self) -> None:
        """Changes that landed behind the position since it passed them: sent now, late."""
        assert self.position is not None
        position = self.position
        keys = [k for k in await self._window_keys() if k <= position and k not in self.recent]
        floor = position[0] - self.lookback_ms
        self.recent = {k: None for k in self.recent if k[0] >= floor}
        if not keys:
            return
        docs = await self.catalogue.by_ids(EVENTS, [k[1] for k in keys])
        late = []
        for key in sorted(keys):
            doc = docs.get(key[1])
            self.recent[key] = None
            if doc is not None and key_of(doc) == key:
                late.append(Change(key, doc, dumps(change_item(doc)), late=True))
        if late:
            log.info("change stream: %d change(s) committed behind the position", len(late))
            self._fan_out(late)

    def close(self) -> None:
        """Stop polling and end every stream (a client reconnects to another replica)."""
        self.stopping.set()
        for sub in list(self.subscribers):
            sub.closed.set()

    # --- one connection -------------------------------------------------------------------

    async def catch_up(self, sub: Subscriber) -> AsyncIterator[Change]:
        """The store's changes from the subscriber's cursor to the hub's position at join."""
        assert sub.floor is not None
        joined = sub.last
        after = feed_position(sub.floor)
        until = from_ms(joined[0])
        low = joined[0] - self.lookback_ms
        while True:
            docs, more = await self.catalogue.changes(after, BATCH, until)
            for doc in docs:
                key = key_of(doc)
                if key > joined:
                    return
                if key[0] >= low:
                    sub.caught_up.add(key)
                yield Change(key, doc, b"")
            if not more or not docs:
                return
            after = feed_position(key_of(docs[-1]))

    async def events(
        self, sub: Subscriber, expires_at: float | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes of one SSE response: retry hint, catch-up, live changes, heartbeats."""
        try:
            yield f"retry: {self.retry_ms}\n: connected\n\n".encode()
            if sub.floor is not None:
                sent = 0
                async for change in self.catch_up(sub):
                    if sub.filters.matches(change.doc):
                        data = dumps(change_item(change.doc))
                        yield frame(cursor_of(change.key), data)
                        sent += 1
                    if self.stopping.is_set():
                        return
                self.on_delivered(sent)
            last_id = cursor_of(sub.last)
            while not sub.closed.is_set():
                timeout = self.heartbeat_s
                if expires_at is not None:
                    timeout = min(timeout, expires_at - time.time())
                    if timeout <= 0:
                        yield b": token expired, reconnect with a fresh one\n\n"
                        return
                try:
                    got = await self._next(sub, wait_s=timeout)
                except TimeoutError:
                    if sub.overflowed:
                        yield b": too far behind, reconnect with Last-Event-ID\n\n"
                        return
                    yield b": heartbeat\n\n"
                    continue
                if got is None:
                    return
                batch = [got]
                while not sub.queue.empty() and len(batch) < 100:
                    batch.append(sub.queue.get_nowait())
                out = []
                for item in batch:
                    if item.late:
                        out.append(frame(last_id, item.data))
                    else:
                        sub.last = item.key
                        last_id = cursor_of(item.key)
                        out.append(frame(last_id, item.data))
                self.on_delivered(len(batch))
                yield b"".join(out)
                if sub.overflowed and sub.queue.empty():
                    yield b": too far behind, reconnect with Last-Event-ID\n\n"
                    return
        finally:
            self.unsubscribe(sub)

    async def _next(self, sub: Subscriber, *, wait_s: float) -> Change | None:
        """The next queued change (None: the stream is closing); TimeoutError when none came,
        or at once when the subscriber overflowed and its queue is drained."""
        if sub.overflowed and sub.queue.empty():
            raise TimeoutError
        getter = asyncio.ensure_future(sub.queue.get())
        closer = asyncio.ensure_future(sub.closed.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, closer}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closer.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if closer in done:
            return None
        raise TimeoutError


def frame(event_id: str | None, data: bytes) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: change\n".encode() + b"data: " + data + b"\n\n"


SSE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # a proxy in front must not buffer the stream
}


class EventStreamResponse(StreamingResponse):
    """A stream that notices a client leaving while idle (it listens for ``http.disconnect``
    whatever the ASGI version) and always closes its generator (so the subscriber goes)."""

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        body = self.body_iterator
        try:
            async for chunk in body:
                data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if isinstance(body, AsyncGenerator):
                await body.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def streaming() -> None:
                with contextlib.suppress(OSError):
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            async def listening() -> None:
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()

            group.start_soon(streaming)
            group.start_soon(listening)


def respond(request: Request, hub: Hub | None, principal: Principal) -> Response:
    """``GET /events/stream`` (and the web page's ``/web/changes/stream``) for this caller."""
    if hub is None or not hub.ready.is_set():
        raise ApiError(503, "Change stream unavailable", retry_after=5)
    filters, after = read_stream_params(request.query_params)
    resume = resume_key(request.headers.get("last-event-id"), after)
    try:
        sub = hub.subscribe(filters, resume)
    except Full as err:
        hub.on_dropped("full")
        raise ApiError(503, "Too many streams on this replica, retry later", retry_after=5) from err
    return EventStreamResponse(
        hub.events(sub, principal.expires_at),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
