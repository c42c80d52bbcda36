"""Marketing outputs built from stored events, with no I/O: iCalendar (RFC 5545) calendars, Atom
and RSS feeds, share links with UTM parameters, and the embeddable widget's HTML.

The routes (services/api/routers/feeds.py) read the events; the benchmark (benchmarks/feeds.py)
times these same builders. The schema.org JSON-LD has one builder, ``services.web.view.json_ld``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from feedgen.feed import FeedGenerator

from services.web.view import place_text, status_name
from shared.mongo import Document
from shared.search import tokens

PRODID = "-//Marquee//Event catalogue feeds//EN"
UID_DOMAIN = "marquee.events"
# A .ics lists at most this many events (a calendar app reads the whole file each refresh).
ICS_MAX = 10_000
# An Atom or RSS feed lists the newest this many (readers keep what they have seen).
FEED_MAX = 100
# Share links: the default campaign and the media a page offers.
CAMPAIGN = "event_share"
SHARE_MEDIA = {"link": "Direct link", "email": "Email link", "social": "Social post link"}


def event_url(base: str, event_id: str) -> str:
    """The event's web page (what a feed item, a calendar entry and a share link point at)."""
    return f"{base.rstrip('/')}/web/events/{quote(event_id, safe='')}"


def with_utm(url: str, source: str, medium: str, campaign: str = CAMPAIGN) -> str:
    """``url`` with ``utm_source``, ``utm_medium`` and ``utm_campaign`` (replacing any given)."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if not k.startswith("utm_")]
    utm = [("utm_source", source), ("utm_medium", medium), ("utm_campaign", campaign)]
    return urlunsplit(parts._replace(query=urlencode(kept + utm)))


def share_links(url: str, campaign: str = CAMPAIGN) -> list[dict[str, str]]:
    """One copyable link per medium, each tagged so analytics can tell them apart."""
    return [
        {"medium": medium, "label": label, "url": with_utm(url, "marquee", medium, campaign)}
        for medium, label in SHARE_MEDIA.items()
    ]


def uid(event_id: str) -> str:
    """Stable per event: the same event is the same calendar entry on every refresh."""
    return f"{event_id}@{UID_DOMAIN}"


def _start(doc: Mapping[str, Any]) -> datetime | date | None:
    """A UTC instant, or the local date when only the date is known (an all-day entry)."""
    start = doc.get("start")
    if isinstance(start, datetime):  # a local event stores the instant itself
        return start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC)
    if not isinstance(start, Mapping) or start.get("date_tbd"):
        return None
    if start.get("time_tbd") and isinstance(start.get("local"), str):
        try:
            return date.fromisoformat(str(start["local"])[:10])
        except ValueError:
            return None
    moment = start.get("utc")
    return moment.astimezone(UTC) if isinstance(moment, datetime) else None


def _end(doc: Mapping[str, Any]) -> datetime | None:
    end = doc.get("end")
    moment = end.get("utc") if isinstance(end, Mapping) else None
    return moment.astimezone(UTC) if isinstance(moment, datetime) else None


def _stamp(doc: Mapping[str, Any], now: datetime) -> datetime:
    moment = doc.get("updated_at") or doc.get("created_at")
    if isinstance(moment, datetime):
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return now


# Control characters a TEXT value cannot hold (tab and newline are kept; newline is escaped).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _text(value: Any) -> str:
    """An RFC 5545 TEXT value: backslash, semicolon, comma and newline escaped, other control
    characters dropped."""
    text = _CONTROL.sub("", str(value).replace("\r\n", "\n").replace("\r", "\n"))
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """RFC 5545 3.1: lines of at most 75 octets, continued by CRLF and a space (a UTF-8
    character is never split)."""
    data = line.encode()
    if len(data) <= 75:
        return line
    parts, start, limit = [], 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1  # back to the first byte of a character
        parts.append(data[start:end].decode())
        start, limit = end, 74  # a continuation line starts with its space
    return "\r\n ".join(parts)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def vevent(doc: Document, base: str, now: datetime) -> list[str] | None:
    """One event as the lines of a VEVENT (None when it has no date yet: an entry needs one).
    UID stable per event; DTSTART in UTC (or a DATE when only the day is known); STATUS
    CANCELLED for a cancelled event."""
    start = _start(doc)
    if start is None:
        return None
    event_id = str(doc["_id"])
    stamp = _utc(_stamp(doc, now))
    lines = ["BEGIN:VEVENT", f"UID:{_text(uid(event_id))}", f"DTSTAMP:{stamp}"]
    if isinstance(start, datetime):
        lines.append(f"DTSTART:{_utc(start)}")
        end = _end(doc)
        if end is not None and end > start:
            lines.append(f"DTEND:{_utc(end)}")
    else:
        lines.append(f"DTSTART;VALUE=DATE:{start.strftime('%Y%m%d')}")
        lines.append(f"DTEND;VALUE=DATE:{(start + timedelta(days=1)).strftime('%Y%m%d')}")
    lines.append(f"SUMMARY:{_text(doc.get('title') or 'Event')}")
    place = place_text(doc.get("venue")) or ("Online" if doc.get("online") else "")
    if place:
        lines.append(f"LOCATION:{_text(place)}")
    lines.append(f"URL:{event_url(base, event_id)}")
    if doc.get("description"):
        lines.append(f"DESCRIPTION:{_text(doc['description'])}")
    cancelled = status_name(doc.get("status")) == "cancelled"
    lines.append(f"STATUS:{'CANCELLED' if cancelled else 'CONFIRMED'}")
    if isinstance(doc.get("updated_at"), datetime):
        lines.append(f"LAST-MODIFIED:{stamp}")
    lines.append("END:VEVENT")
    return lines


def calendar(docs: Iterable[Document], name: str, base: str, now: datetime | None = None) -> bytes:
    """An RFC 5545 calendar of ``docs``: CRLF line ends, lines folded at 75 octets. Written
    directly (the ``icalendar`` package builds ten times slower); the tests and the benchmark
    parse every output back with ``icalendar``."""
    moment = now or datetime.now(UTC)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_text(name)}",
    ]
    for doc in docs:
        entry = vevent(doc, base, moment)
        if entry is not None:
            lines.extend(entry)
    lines.append("END:VCALENDAR")
    return ("\r\n".join(_fold(line) for line in lines) + "\r\n").encode()


# What XML 1.0 cannot hold (lxml refuses it): control characters but tab, LF, CR; lone
# surrogates; U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(value: Any) -> str:
    return _NOT_XML.sub("", str(value))


def _feed(docs: list[Document], title: str, self_url: str, base: str) -> FeedGenerator:
    feed = FeedGenerator()
    self_url, title = _xml(self_url), _xml(title)
    feed.id(self_url)
    feed.title(title)
    feed.link(href=self_url, rel="self")
    feed.link(href=f"{base.rstrip('/')}/web/", rel="alternate")
    feed.description(title)
    feed.language("en")
    newest = max((_stamp(d, datetime(1970, 1, 1, tzinfo=UTC)) for d in docs), default=None)
    feed.updated(newest or datetime(1970, 1, 1, tzinfo=UTC))
    # feedgen lists entries in reverse order of addition: add the oldest first.
    for doc in reversed(docs):
        event_id = str(doc["_id"])
        url = event_url(base, event_id)
        entry = feed.add_entry()
        entry.id(f"tag:{UID_DOMAIN},2026:event:{event_id}")
        entry.guid(f"tag:{UID_DOMAIN},2026:event:{event_id}", permalink=False)
        entry.title(_xml(doc.get("title") or "Event"))
        entry.link(href=url)
        stamp = _stamp(doc, datetime(1970, 1, 1, tzinfo=UTC))
        entry.updated(stamp)
        entry.published(stamp)
        start = _start(doc)
        when = start.isoformat() if start is not None else "date to be announced"
        summary = f"{when} · {place_text(doc.get('venue')) or 'place to be announced'}"
        if status_name(doc.get("status")) != "scheduled":
            summary += f" · {status_name(doc.get('status'))}"
        entry.summary(_xml(summary))
    return feed


def atom(docs: list[Document], title: str, self_url: str, base: str) -> bytes:
    """Atom 1.0, newest first (``docs`` in that order)."""
    return bytes(_feed(docs, title, self_url, base).atom_str(pretty=False))


def rss(docs: list[Document], title: str, self_url: str, base: str) -> bytes:
    """RSS 2.0, newest first (``docs`` in that order)."""
    return bytes(_feed(docs, title, self_url, base).rss_str(pretty=False))


def etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


# The widget loads nothing: its style is inline (allowed by hash-free 'unsafe-inline' for styles
# only), no script, and links open in the parent's top window.
WIDGET_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors *"
)
_WIDGET_STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:8px;color:#1b1b1f;background:#fff}"
    "h1{font-size:16px;margin:0 0 6px}ul{list-style:none;margin:0;padding:0}"
    "li{padding:6px 0;border-top:1px solid #ddd}a{color:#0b57d0;text-decoration:none}"
    ".when{display:block;color:#555;font-size:12px}.cancelled{color:#b3261e}"
    "footer{margin-top:6px;font-size:11px;color:#555}"
)


def widget_html(docs: list[Document], heading: str, base: str, campaign: str) -> str:
    """A self-contained page for an iframe: a venue's or artist's upcoming events."""
    items = []
    for doc in docs:
        url = with_utm(event_url(base, str(doc["_id"])), "widget", "embed", campaign)
        start = _start(doc)
        when = (
            start.strftime("%a %d %b %Y, %H:%M UTC")
            if isinstance(start, datetime)
            else (start.strftime("%a %d %b %Y") if start is not None else "date to be announced")
        )
        status = status_name(doc.get("status"))
        cancelled = status == "cancelled"
        flag = f' <span class="cancelled">({escape(status)})</span>' if cancelled else ""
        place = escape(place_text(doc.get("venue")))
        items.append(
            f'<li><a href="{escape(url)}" target="_top" rel="noopener">'
            f"{escape(str(doc.get('title') or 'Event'))}</a>{flag}"
            f'<span class="when">{escape(when)} · {place}</span></li>'
        )
    body = "".join(items) or "<li>No upcoming events.</li>"
    home = escape(with_utm(base.rstrip("/") + "/web/", "widget", "embed", campaign))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(heading)}</title><style>{_WIDGET_STYLE}</style></head><body>"
        f'<h1>{escape(heading)}</h1><ul class="events">{body}</ul>'
        f'<footer>Listed by <a href="{home}"'
        ' target="_top" rel="noopener">Marquee</a></footer></body></html>'
    )


def feed_path(kind: str, name: str) -> str:
    """``/feeds/venues/<name>.ics`` and the like (the name quoted as one path segment)."""
    return f"/feeds/{kind}/{quote(name, safe='')}.ics"


def share_section(event: Document, base: str, token: str | None = None) -> dict[str, Any]:
    """What an event page's "Share" section lists: the page with UTM tags per medium, the
    calendars of its venue and performers, and the embed snippets of their widgets (with
    ``token`` in their URLs when one was just made, else a placeholder)."""
    root = base.rstrip("/")
    page = event_url(root, str(event["_id"]))
    calendars: list[dict[str, str]] = []
    widgets: list[dict[str, str]] = []
    venue = (event.get("venue") or {}).get("name")
    named: list[tuple[str, str, str]] = []
    if isinstance(venue, str) and tokens(venue):
        named.append(("venues", venue, f"Events at {venue}"))
    for person in event.get("performers") or []:
        name = person.get("name") if isinstance(person, Mapping) else None
        if isinstance(name, str) and tokens(name):
            named.append(("artists", name, f"Events of {name}"))
    suffix = "?" + urlencode({"token": token}) if token else ""
    for kind, name, label in named:
        calendars.append({"label": label, "url": root + feed_path(kind, name) + suffix})
        src = f"{root}/widgets/{kind}/{quote(name, safe='')}?token={token or 'YOUR_TOKEN'}"
        widgets.append({"label": label, "snippet": embed_snippet(src, label)})
    return {
        "links": share_links(page),
        "calendars": calendars,
        "widgets": widgets,
        "token": token,
    }


def embed_snippet(src: str, title: str) -> str:
    """The documented way to embed a widget: a sandboxed iframe (no scripts, links open on top)."""
    return (
        f'<iframe src="{escape(src)}" title="{escape(title)}" width="320" height="400"'
        ' sandbox="allow-popups allow-top-navigation-by-user-activation"'
        ' referrerpolicy="no-referrer" loading="lazy"></iframe>'
    )


def search_feeds(base: str, params: Mapping[str, str]) -> list[dict[str, str]]:
    """A saved search as feed addresses: the search's own parameters on each feed."""
    kept = {k: v for k, v in params.items() if k not in ("limit", "cursor", "sort", "token")}
    query = ("?" + urlencode(kept)) if kept else ""
    root = base.rstrip("/")
    return [
        {"label": "iCalendar", "kind": "ics", "url": f"{root}/feeds/search.ics{query}"},
        {"label": "Atom", "kind": "atom", "url": f"{root}/feeds/search.atom{query}"},
        {"label": "RSS", "kind": "rss", "url": f"{root}/feeds/search.rss{query}"},
    ]
