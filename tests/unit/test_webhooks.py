"""Webhook subscriptions without servers: the matcher's filters (category subtree, radius,
source, types), the URL rules, the importer's subscription cache and matcher, and the
notifier's routing of subscription notifications (their URL and secret, dropped when gone)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.importer.hooks import HookMatcher, SubscriptionCache, hook_notification
from services.importer.notifier import (
    Attempt,
    Backoff,
    DeadLetter,
    Notifier,
    Received,
    StoredTargets,
    SubscriptionDelivery,
    Target,
)
from shared.contracts import CanonicalChange, CanonicalEvent, ChangeOp, Notification, Provider
from shared.contracts.documents import SourceRef, Venue, When
from shared.mongo import Document
from shared.webhooks import (
    CANONICAL_CHANGED,
    Subscription,
    WebhookFilters,
    blocked_address,
    distance_km,
    matches,
    url_problem,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHICAGO = (41.8781, -87.6298)
EVANSTON = (42.0451, -87.6877)  # ~19 km north
MILWAUKEE = (43.0389, -87.9065)  # ~130 km north


def change(
    cid: str = "ev1",
    *,
    op: ChangeOp = ChangeOp.UPDATED,
    version: int = 2,
    category: str | None = "music",
    sub: str | None = "rock",
    at: tuple[float, float] | None = CHICAGO,
    sources: Sequence[Provider] = (Provider.TICKETMASTER,),
    changed_at: datetime = T0 + timedelta(hours=1),
) -> CanonicalChange:
    event = CanonicalEvent(
        id=cid,
        sources=[SourceRef(source=s, external_id=f"x{i}") for i, s in enumerate(sources)],
        title="Electric Giants",
        category=category,
        subcategory=sub,
        start=When(utc=T0 + timedelta(days=30), timezone="America/Chicago"),
        venue=Venue(name="Vertex", lat=at[0], lon=at[1]) if at else Venue(name="Somewhere"),
        version=version,
    )
    return CanonicalChange(
        op=op,
        canonical_id=cid,
        version=version,
        event=event,
        merged_into="ev9" if op is ChangeOp.MERGED else None,
        changed_at=changed_at,
    )


def filters(**kw: Any) -> WebhookFilters:
    return WebhookFilters.model_validate(kw)


def test_no_filters_match_every_change() -> None:
    assert matches(filters(), change())
    assert matches(filters(), change(category=None, sub=None, at=None))


def test_category_matches_its_subtree_and_subcategories_case_insensitively() -> None:
    assert matches(filters(category="music"), change(category="music", sub="rock"))
    assert matches(filters(category="Music"), change(category="music", sub="jazz"))
    assert matches(filters(category="rock"), change(category="music", sub="rock"))
    assert not matches(filters(category="jazz"), change(category="music", sub="rock"))
    assert not matches(filters(category="music"), change(category="sports", sub="rock-climb"))
    assert matches(filters(category="jazz, rock"), change(category="music", sub="rock"))
    assert not matches(filters(category="music"), change(category=None, sub=None))


def test_radius_uses_great_circle_distance() -> None:
    assert 17 < distance_km(*CHICAGO, *EVANSTON) < 21
    near = {"lat": CHICAGO[0], "lon": CHICAGO[1], "radius_km": 25}
    assert matches(filters(near=near), change(at=EVANSTON))
    assert not matches(filters(near=near), change(at=MILWAUKEE))
    assert matches(filters(near={**near, "radius_km": 200}), change(at=MILWAUKEE))
    assert not matches(filters(near=near), change(at=None))  # no coordinates: no match
    # The default radius is 50 km.
    assert filters(near={"lat": 1, "lon": 2}).near is not None
    assert filters(near={"lat": 1, "lon": 2}).near.radius_km == 50  # type: ignore[union-attr]


def test_source_and_types() -> None:
    two = change(sources=(Provider.TICKETMASTER, Provider.SEATGEEK))
    assert matches(filters(source="seatgeek"), two)
    assert not matches(filters(source="meetup"), two)
    assert matches(filters(types=["cancelled", "merged"]), change(op=ChangeOp.CANCELLED))
    assert not matches(filters(types=["cancelled"]), change(op=ChangeOp.UPDATED))
    assert matches(filters(types=["merged"]), change(op=ChangeOp.MERGED))


def test_every_filter_must_hold() -> None:
    f = filters(
        source="ticketmaster",
        category="rock",
        near={"lat": CHICAGO[0], "lon": CHICAGO[1], "radius_km": 5},
        types=["updated"],
    )
    assert matches(f, change())
    assert not matches(f, change(at=EVANSTON))
    assert not matches(f, change(op=ChangeOp.CREATED))


def test_a_subscription_wants_only_changes_made_after_it() -> None:
    sub = Subscription("wh_1", "org", filters(), created_at=T0)
    assert sub.wants(change(changed_at=T0 + timedelta(seconds=1)))
    assert not sub.wants(change(changed_at=T0 - timedelta(seconds=1)))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/marquee", None),
        ("http://203.0.113.10:8080/x", "private"),  # TEST-NET-3: reserved documentation range
        ("http://8.8.8.8/x", None),
        ("ftp://hooks.example.com/", "http or https"),
        ("https:///nohost", "host"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("http://localhost:9000/", "local name"),
        ("http://127.0.0.1/", "private"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.1.5/", "private"),
        ("http://169.254.169.254/latest/meta-data", "private"),
        ("http://[::1]/", "private"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://100.64.0.1/", "private"),
        ("http://hooks.example.com:99999/", "valid URL"),
    ],
)
def test_url_rules_outside_dev(url: str, problem: str | None) -> None:
    found = url_problem(url, allow_private=False)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found, found


def test_dev_and_test_may_use_loopback() -> None:
    assert url_problem("http://127.0.0.1:8080/hook", allow_private=True) is None
    assert url_problem("ftp://127.0.0.1/", allow_private=True) is not None
    assert blocked_address("127.0.0.1")
    assert not blocked_address("hooks.example.com")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sub_doc(sid: str, owner: str = "org-1", **flt: Any) -> Document:
    return {"_id": sid, "owner": owner, "filters": flt, "created_at": T0, "active": True}


async def test_matcher_reads_subscriptions_once_per_refresh_and_ids_are_deterministic() -> None:
    docs = [sub_doc("wh_rock", category="rock"), sub_doc("wh_all", owner="org-2")]
    loads = 0

    async def load() -> list[Document]:
        nonlocal loads
        loads += 1
        return list(docs)

    clock = Clock()
    emitted: list[Notification] = []

    async def emit(notes: Sequence[Notification]) -> None:
        emitted.extend(notes)

    matcher = HookMatcher(SubscriptionCache(load, 5.0, clock), emit)
    out = await matcher.process([change("a"), change("b", category="sports", sub="golf")])
    assert loads == 1
    assert out.matched == {"wh_rock": 1, "wh_all": 2}
    assert {(n.user_id, n.payload["subscription_id"]) for n in emitted} == {
        ("org-1", "wh_rock"),
        ("org-2", "wh_all"),
    }
    note = emitted[0]
    assert note.type == CANONICAL_CHANGED
    assert note.payload["change"]["canonical_id"] == "a"
    assert note.payload["change"]["event"]["_id"] == "a"  # as on events.canonical
    assert "secret" not in note.to_json_bytes().decode()
    # The same change again (a redelivery): the same notification ids.
    again = await matcher.process([change("a")])
    assert {n.notification_id for n in again.notifications} <= {n.notification_id for n in emitted}
    assert loads == 1  # still cached
    docs.append(sub_doc("wh_new"))
    clock.now = 5.0
    await matcher.process([change("c")])
    assert loads == 2
    assert emitted[-1].payload["subscription_id"] == "wh_new"
    # Another version of the same event is another notification.
    v3 = hook_notification(Subscription.from_document(docs[1]), change("a", version=3))
    assert v3.notification_id not in {n.notification_id for n in emitted}


class MemoryStore:
    def __init__(self, subs: dict[str, Document]) -> None:
        self.docs: dict[str, dict[str, Document]] = {"webhook_subscriptions": subs}
        self.reads = 0

    async def by_ids(
        self, collection: str, ids: Iterable[str], fields: Sequence[str] | None = None
    ) -> dict[str, Document]:
        if collection == "webhook_subscriptions":
            self.reads += 1
        held = self.docs.setdefault(collection, {})
        return {i: held[i] for i in ids if i in held}

    async def insert_new(self, collection: str, docs: Sequence[Document]) -> set[str]:
        held = self.docs.setdefault(collection, {})
        existed = {d["_id"] for d in docs if d["_id"] in held}
        held.update({d["_id"]: d for d in docs})
        return existed


SECRET = "s3cr3t-s3cr3t-s3cr3t"


async def test_notifier_posts_to_the_subscription_signed_and_drops_gone_ones() -> None:
    store = MemoryStore(
        {
            "wh_live": {"_id": "wh_live", "url": "http://hook/live", "secret": SECRET,
                        "active": True, "deleted_at": None},
            "wh_gone": {"_id": "wh_gone", "url": "http://hook/gone", "active": False,
                        "deleted_at": T0},
        }
    )  # fmt: skip
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    default_calls: list[str] = []

    async def default(note: Notification, body: bytes) -> Attempt:
        default_calls.append(note.user_id)
        return Attempt(ok=True)

    dead: list[DeadLetter] = []

    async def dead_letters(letters: Sequence[DeadLetter]) -> None:
        dead.extend(letters)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        notifier = Notifier(
            store, default, dead_letters, backoff=Backoff(0.001, 0.01, 3), concurrency=4,
            stop=asyncio.Event(), targets=StoredTargets(store, 5.0),
            to_subscription=SubscriptionDelivery(http, allow_private=True),
        )  # fmt: skip
        notes = [
            Notification(user_id="org", type=CANONICAL_CHANGED, payload={"subscription_id": s})
            for s in ("wh_live", "wh_gone", "wh_unknown")
        ] + [Notification(user_id="importer-user", type="event.imported")]
        out = await notifier.process(
            [Received(n.to_json_bytes(), b"k", 0, i) for i, n in enumerate(notes)]
        )
    assert (out.delivered, out.dropped, out.dead_lettered) == (2, 2, 0)
    assert default_calls == ["importer-user"]  # import notifications: as before
    [request] = seen
    assert str(request.url) == "http://hook/live"
    expected = hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["x-marquee-signature"] == f"sha256={expected}"
    assert request.headers["idempotency-key"] == notes[0].notification_id
    assert request.headers["ce_type"] == Notification.type_name()
    assert SECRET.encode() not in request.content


async def test_subscription_delivery_refuses_names_that_resolve_inward() -> None:
    async def resolve(host: str) -> list[str]:
        return {"inward.example": ["10.0.0.7"], "outward.example": ["8.8.4.4"]}[host]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    note = Notification(user_id="o", type=CANONICAL_CHANGED, payload={"subscription_id": "w"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        deliver = SubscriptionDelivery(http, allow_private=False, resolve=resolve)
        refused = await deliver(Target("http://inward.example/h", SECRET), note, b"{}")
        sent = await deliver(Target("http://outward.example/h", SECRET), note, b"{}")
    assert not refused.ok
    assert not refused.retry
    assert "private address" in refused.error
    assert sent.ok


async def test_stored_targets_are_cached_briefly() -> None:
    store = MemoryStore({"w": {"_id": "w", "url": "http://h/", "secret": SECRET, "active": True}})
    clock = Clock()
    targets = StoredTargets(store, 5.0, clock)
    assert (await targets.resolve(["w"]))["w"].url == "http://h/"
    assert SECRET not in repr((await targets.resolve(["w"]))["w"])
    assert store.reads == 1
    store.docs["webhook_subscriptions"]["w"]["active"] = False
    assert await targets.resolve(["w"]) != {}  # within the cache time
    clock.now = 5.0
    assert await targets.resolve(["w"]) == {}
    assert store.reads == 2
