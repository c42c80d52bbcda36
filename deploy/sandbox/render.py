"""Render world records into each provider's JSON shapes (mirroring the recorded samples)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from deploy.sandbox.world import EB, MU, SG, TM, Artist, Performance, Performer, Rec, Venue, World
from deploy.sandbox.world import zone as tzone

TM_BASE = "/discovery/v2"


def utc_z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def naive_s(dt: datetime) -> str:
    """SeatGeek and Eventbrite 'local' strings: wall time without any offset."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


def _h(*parts: object) -> int:
    """Stable per-record pseudo-randomness for cosmetic fields (no RNG state involved)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=4).digest(), "big")


# ---------------- Ticketmaster ----------------
_TM_SEGMENTS = {
    "music": ("KZFzniwnSyZfZ7v7nJ", "Music"),
    "sports": ("KZFzniwnSyZfZ7v7nE", "Sports"),
    "arts": ("KZFzniwnSyZfZ7v7na", "Arts & Theatre"),
    "comedy": ("KZFzniwnSyZfZ7v7na", "Arts & Theatre"),
    "family": ("KZFzniwnSyZfZ7v7n1", "Miscellaneous"),
    "community": ("KZFzniwnSyZfZ7v7n1", "Miscellaneous"),
}


def _tm_classification(category: str, genre: str) -> dict[str, Any]:
    seg_id, seg = _TM_SEGMENTS[category]
    gid = "KnvZfZ7v" + format(_h("genre", genre), "x")[:3]
    return {
        "primary": True,
        "segment": {"id": seg_id, "name": seg},
        "genre": {"id": gid, "name": genre},
        "subGenre": {"id": "KZazBEonSMnZfZ7v6JI", "name": "Undefined"},
        "family": category == "family",
    }


def tm_image(seed: str) -> list[dict[str, Any]]:
    return [
        {
            "ratio": "16_9",
            "url": f"https://s1.ticketm.net/dam/a/{seed}_RETINA_PORTRAIT_16_9.jpg",
            "width": 640,
            "height": 360,
            "fallback": False,
        },
        {
            "ratio": "3_2",
            "url": f"https://s1.ticketm.net/dam/a/{seed}_ARTIST_PAGE_3_2.jpg",
            "width": 305,
            "height": 203,
            "fallback": False,
        },
    ]


def tm_venue(v: Venue) -> dict[str, Any]:
    c = v.city
    out: dict[str, Any] = {
        "name": v.name,
        "type": "venue",
        "id": v.tm_id,
        "test": False,
        "url": f"https://www.ticketmaster.com/venue/{v.tm_id}",
        "locale": "en-us",
        "postalCode": v.postal_code,
        "timezone": c.tz,
        "city": {"name": c.name},
        "country": {"name": c.country_name, "countryCode": c.country_code},
        "address": {"line1": v.address},
        # Real TM sends coordinates as strings.
        "location": {"longitude": f"{v.lon:.8f}", "latitude": f"{v.lat:.8f}"},
        "_links": {"self": {"href": f"{TM_BASE}/venues/{v.tm_id}?locale=en-us"}},
    }
    if c.state_code:
        out["state"] = {"name": c.state_name, "stateCode": c.state_code}
    return out


# Ticketmaster writes some teams' cities short ("LA Miners", "NY Comets", "St. Louis ..."):
# the same performer as SeatGeek's "Los Angeles Miners", which the resolver must see.
_SHORT = (("Los Angeles ", "LA "), ("New York ", "NY "), ("Saint ", "St. "))


def tm_name(p: Performer) -> str:
    if _h(p.tm_id, "short") % 3:
        return p.name
    name = p.name
    for full, short in _SHORT:
        name = name.replace(full, short)
    return name


def tm_attraction(p: Performer) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": tm_name(p),
        "type": "attraction",
        "id": p.tm_id,
        "test": False,
        "url": f"https://www.ticketmaster.com/artist/{p.tm_id}",
        "locale": "en-us",
        "images": tm_image(p.tm_id),
        "classifications": [_tm_classification(p.category, p.genre)],
        "_links": {"self": {"href": f"{TM_BASE}/attractions/{p.tm_id}?locale=en-us"}},
    }
    if p.tm_links_spotify and p.spotify_id:
        out["externalLinks"] = {
            "spotify": [{"url": f"https://open.spotify.com/artist/{p.spotify_id}"}],
            "homepage": [{"url": f"https://example.org/{p.tm_id}"}],
        }
    return out


def tm_status(rec: Rec, now: datetime) -> dict[str, Any]:
    st = rec.perf.status
    if st == "scheduled":
        if rec.tm_status_empty:
            return {}  # the real API sometimes sends an empty status object
        return {"code": "offsale" if rec.start < now else "onsale"}
    return {"code": st}  # cancelled, postponed, rescheduled


def tm_event(world: World, rec: Rec) -> dict[str, Any]:
    key = (TM, rec.ext_id)
    hit = world.cache.get(key)
    if hit is not None:
        return hit
    perf = rec.perf
    local = rec.start.astimezone(tzone(perf.tz))
    tbd_time = perf.time_tbd or perf.status == "postponed"
    start: dict[str, Any] = {"localDate": local.date().isoformat()}
    if not tbd_time and rec.tm_date_flag is None:
        start["localTime"] = local.strftime("%H:%M:%S")
        start["dateTime"] = utc_z(rec.start)
    start.update(
        dateTBD=rec.tm_date_flag == "TBD",
        dateTBA=rec.tm_date_flag == "TBA",
        timeTBA=tbd_time,
        noSpecificTime=tbd_time or rec.tm_date_flag is not None,
    )
    dates: dict[str, Any] = {"start": start}
    if not rec.tm_tz_missing:
        dates["timezone"] = perf.tz
    dates["status"] = tm_status(rec, world.now)
    dates["spanMultipleDays"] = False
    genre = perf.performers[0].genre if perf.performers else "Community"
    onsale = perf.created + timedelta(days=7)
    ev: dict[str, Any] = {
        "name": rec.title,
        "type": "event",
        "id": rec.ext_id,
        "test": False,
        "url": f"https://www.ticketmaster.com/event/{rec.ext_id}",
        "locale": "en-us",
        "images": tm_image(rec.ext_id),
        "sales": {
            "public": {
                "startDateTime": utc_z(onsale),
                "startTBD": False,
                "endDateTime": utc_z(rec.start),
            }
        },
        "dates": dates,
        "classifications": [_tm_classification(perf.category, genre)],
        "promoter": {"id": str(600 + _h(perf.pid) % 300)},
    }
    if rec.addon:
        ev["classifications"][0]["type"] = {"id": "KZAyXgnZfZ7v7nI", "name": "Upsell"}
    if _h(rec.ext_id, "info") % 3 == 0:
        ev["info"] = "Doors open one hour before the show."
    if _h(rec.ext_id, "note") % 4 == 0:
        ev["pleaseNote"] = "No cameras or recording devices."
    if perf.price is not None and not rec.tm_price_missing:
        lo, hi = perf.price
        ev["priceRanges"] = [
            {
                "type": "standard",
                "currency": _currency(perf),
                "min": round(lo * rec.price_factor, 2),
                "max": round(hi * rec.price_factor, 2),
            }
        ]
    embedded: dict[str, Any] = {"venues": [tm_venue(perf.venue)]}
    if perf.performers:
        embedded["attractions"] = [tm_attraction(p) for p in perf.performers]
    ev["_links"] = {
        "self": {"href": f"{TM_BASE}/events/{rec.ext_id}?locale=en-us"},
        "attractions": [
            {"href": f"{TM_BASE}/attractions/{p.tm_id}?locale=en-us"} for p in perf.performers
        ],
        "venues": [{"href": f"{TM_BASE}/venues/{perf.venue.tm_id}?locale=en-us"}],
    }
    ev["_embedded"] = embedded
    world.cache[key] = ev
    return ev


def _currency(perf: Performance) -> str:
    cc = perf.venue.city.country_code
    return {
        "US": "USD",
        "CA": "CAD",
        "GB": "GBP",
        "AU": "AUD",
        "JP": "JPY",
        "IN": "INR",
        "MX": "MXN",
        "BR": "BRL",
        "NG": "NGN",
        "SE": "SEK",
    }.get(cc, "EUR")


# ---------------- SeatGeek ----------------
_SG_TAXONOMY: dict[str, list[tuple[str, int, int | None]]] = {
    "music": [("concert", 2000000, None)],
    "sports": [("sports", 1000000, None)],
    "arts": [("theater", 3000000, None), ("broadway_tickets_national", 3010000, 3000000)],
    "comedy": [("theater", 3000000, None), ("comedy", 3020000, 3000000)],
    "family": [("family", 9000000, None)],
    "community": [("conference", 6000000, None)],
}
_SG_SPORT = {"nba": 1030100, "nhl": 1040100, "mlb": 1010100, "mls": 1020100}


def sg_taxonomies(perf: Performance) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"id": i, "name": n, "parent_id": p} for n, i, p in _SG_TAXONOMY[perf.category]
    ]
    if perf.category == "sports":
        out.append({"id": _SG_SPORT[perf.genre], "name": perf.genre, "parent_id": 1000000})
    return out


def sg_type(perf: Performance) -> str:
    if perf.category == "sports":
        return perf.genre
    return {
        "music": "concert",
        "arts": "broadway_tickets_national",
        "comedy": "comedy",
        "family": "family",
        "community": "conference",
    }[perf.category]


def sg_performer(p: Performer, primary: bool = False, home: bool = False) -> dict[str, Any]:
    slug = _slug(p.name)
    image = f"https://seatgeek.com/images/performers-landscape/{slug}-{p.sg_id}/huge"
    out: dict[str, Any] = {
        "id": p.sg_id,
        "name": p.name,
        "short_name": p.short_name,
        "slug": slug,
        "type": p.genre.lower() if p.category != "music" else "band",
        "url": f"https://seatgeek.com/{slug}-tickets",
        "image": image,
        "images": {"huge": image},
        "score": p.score,
        "popularity": 0,
        "has_upcoming_events": True,
        "primary": primary,
        "taxonomies": [],
    }
    if p.category == "music":
        out["genres"] = [
            {"id": _h(p.genre) % 1000, "name": p.genre, "slug": _slug(p.genre), "primary": True}
        ]
    if p.home_city is not None:
        out["home_team"] = home
        out["away_team"] = not home
    return out


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(x for x in out.split("-") if x)


def sg_venue(v: Venue) -> dict[str, Any]:
    c = v.city
    return {
        "id": v.sg_id,
        "name": v.sg_name,
        "name_v2": v.sg_name,
        "slug": _slug(v.name),
        "url": f"https://seatgeek.com/venues/{_slug(v.name)}/tickets",
        "address": v.address,
        "extended_address": f"{c.name}, {c.state_code} {v.postal_code}".replace(" ,", ","),
        "display_location": f"{c.name}, {c.state_code or c.country_code}",
        "city": c.name,
        "state": c.state_code or None,
        "postal_code": v.postal_code,
        "country": c.country_code,
        "location": {"lat": v.lat, "lon": v.lon},
        "timezone": c.tz,
        "capacity": v.capacity,
        "score": round(0.3 + (_h(v.sg_id) % 600) / 1000, 4),
        "popularity": 0,
        "has_upcoming_events": True,
        "num_upcoming_events": 1 + _h(v.sg_id, "n") % 80,
        "metro_code": 500 + _h(c.name) % 400,
        "links": [],
        "access_method": None,
    }


def sg_event(world: World, rec: Rec) -> dict[str, Any]:
    key = (SG, rec.ext_id)
    hit = world.cache.get(key)
    if hit is not None:
        return hit
    perf = rec.perf
    tz = tzone(perf.tz)
    local = rec.start.astimezone(tz)
    tbd = perf.time_tbd or perf.status == "postponed"
    if tbd:
        # SeatGeek shows an unknown time as 03:30 local; its UTC follows from that placeholder.
        local = local.replace(hour=3, minute=30, second=0)
    utc = local.astimezone(rec.start.tzinfo)
    lc = perf.listing_count
    stats: dict[str, Any]
    if lc == 0 or perf.price is None:
        stats = {
            "listing_count": 0,
            "visible_listing_count": 0,
            "lowest_price": None,
            "highest_price": None,
            "average_price": None,
            "median_price": None,
            "lowest_price_good_deals": None,
        }
    else:
        lo, hi = (round(x * rec.price_factor) for x in perf.price)
        stats = {
            "listing_count": lc,
            "visible_listing_count": max(0, lc - lc // 10),
            "lowest_price": lo,
            "highest_price": hi,
            "average_price": (lo + hi) // 2,
            "median_price": (2 * lo + hi) // 3,
            "lowest_price_good_deals": lo,
        }
    ps = perf.performers
    title = rec.title
    short = title
    if perf.category == "sports" and rec.addon is None:
        short = f"{ps[1].short_name} at {ps[0].short_name}"
    ev: dict[str, Any] = {
        "id": int(rec.ext_id),
        "title": title,
        "short_title": short,
        "url": f"https://seatgeek.com/{_slug(short)}-tickets/{local:%m-%d-%Y}/{rec.ext_id}",
        "datetime_utc": naive_s(utc),
        "datetime_local": naive_s(local),
        "visible_until_utc": naive_s(utc + timedelta(hours=4)),
        "enddatetime_utc": None,
        "time_tbd": tbd,
        "date_tbd": perf.status == "postponed",
        "datetime_tbd": perf.status == "postponed",
        "announce_date": naive_s(perf.created),
        "created_at": naive_s(rec.created),
        "type": sg_type(perf),
        "status": "normal",
        "description": "",
        "score": round(0.2 + (_h(rec.ext_id) % 700) / 1000, 3),
        "popularity": round(0.2 + (_h(rec.ext_id, "p") % 700) / 1000, 3),
        "taxonomies": sg_taxonomies(perf),
        "performers": [sg_performer(p, i == 0, i == 0) for i, p in enumerate(ps)],
        "venue": sg_venue(perf.venue),
        "stats": stats,
        "links": [],
        "is_open": False,
        "conditional": False,
        "event_promotion": None,
        "announcements": {},
        "access_method": None,
    }
    world.cache[key] = ev
    return ev


# ---------------- Eventbrite ----------------
EB_CATEGORIES = [
    ("101", "Business & Professional", "Business"),
    ("102", "Science & Technology", "Science & Tech"),
    ("103", "Music", "Music"),
    ("105", "Performing & Visual Arts", "Arts"),
    ("108", "Sports & Fitness", "Sports & Fitness"),
    ("113", "Community & Culture", "Community"),
    ("115", "Family & Education", "Family & Education"),
]
_EB_CAT = {
    "music": "103",
    "sports": "108",
    "arts": "105",
    "family": "115",
    "comedy": "105",
    "community": "102",
}


def eb_category(cid: str) -> dict[str, Any]:
    for i, name, short in EB_CATEGORIES:
        if i == cid:
            return {
                "resource_uri": f"https://www.eventbriteapi.com/v3/categories/{i}/",
                "id": i,
                "name": name,
                "name_localized": name,
                "short_name": short,
                "short_name_localized": short,
            }
    raise KeyError(cid)


def eb_venue(v: Venue) -> dict[str, Any]:
    c = v.city
    lat, lon = f"{v.lat:.7f}", f"{v.lon:.7f}"
    region = c.state_code
    return {
        "address": {
            "address_1": v.address,
            "address_2": "",
            "city": c.name,
            "region": region,
            "postal_code": v.postal_code,
            "country": c.country_code,
            "latitude": lat,
            "longitude": lon,
            "localized_address_display": f"{v.address}, {c.name}, {region} {v.postal_code}",
            "localized_area_display": f"{c.name}, {region or c.country_code}",
            "localized_multi_line_address_display": [v.address, f"{c.name} {v.postal_code}"],
        },
        "resource_uri": f"https://www.eventbriteapi.com/v3/venues/{v.eb_id}/",
        "id": v.eb_id,
        "age_restriction": None,
        "capacity": None,
        "name": v.eb_name,
        "latitude": lat,
        "longitude": lon,
    }


def eb_status(rec: Rec, now: datetime) -> str:
    perf = rec.perf
    end = rec.start + timedelta(minutes=perf.duration_min)
    if perf.cancelled:
        # The real quirk: a cancelled event may keep reading live or completed.
        if rec.eb_cancel_reads == "live":
            return "live" if now < end else "completed"
        return rec.eb_cancel_reads or "canceled"
    if now < rec.start:
        return "live"
    return "started" if now < end else ("ended" if _h(rec.ext_id) % 4 == 0 else "completed")


# Eventbrite organisers type the start's wall-clock time into a form whose time zone defaults
# to their account's, and some leave it there for an event in another city: the wall clock is
# right, the zone (and so the UTC Eventbrite derives from it) is the organisation's home
# city's. One in six listings at a venue, when that is a whole number of hours off the venue's
# zone: a half-hour difference (Bengaluru) is not made, it is not the case being measured.
def eb_zone(world: World, rec: Rec) -> str:
    """The zone an Eventbrite listing gives: the venue's, or its organisation's by mistake."""
    perf = rec.perf
    home = world.eb_org_tz.get(perf.eb_org)
    if perf.online or home is None or home == perf.tz or _h(rec.ext_id, "zone") % 6:
        return perf.tz
    shift = _in_zone(rec.start, perf.tz, home) - rec.start
    if not shift or shift % timedelta(hours=1):
        return perf.tz
    return home


def _in_zone(at: datetime, venue_tz: str, zone_name: str) -> datetime:
    """The instant that has ``at``'s venue wall clock in another zone."""
    if zone_name == venue_tz:
        return at
    wall = at.astimezone(tzone(venue_tz)).replace(tzinfo=None)
    return wall.replace(tzinfo=tzone(zone_name)).astimezone(UTC)


def eb_event(world: World, rec: Rec, expand: set[str]) -> dict[str, Any]:
    key = (EB, rec.ext_id)
    base = world.cache.get(key)
    if base is None:
        base = _eb_base(world, rec)
        world.cache[key] = base
    if not expand:
        return base
    ev = dict(base)
    perf = rec.perf
    cur = _currency(perf)
    if "venue" in expand:
        ev["venue"] = None if perf.online else eb_venue(perf.venue)
    if "category" in expand:
        ev["category"] = eb_category(base["category_id"])
    if "ticket_availability" in expand:
        ev["ticket_availability"] = _eb_tickets(perf, rec, cur)
    if "event_sales_status" in expand:
        if perf.cancelled:
            ss = {
                "sales_status": "sales_ended",
                "start_sales_date": None,
                "message": "Cancelled",
                "message_type": "canonical",
                "message_code": "event_cancelled",
                "currency": cur,
            }
        elif rec.start < world.now:
            ss = {
                "sales_status": "sales_ended",
                "start_sales_date": None,
                "message": "Sales Ended",
                "message_type": "default",
                "message_code": "sales_ended",
                "currency": cur,
            }
        else:
            ss = {
                "sales_status": "on_sale",
                "start_sales_date": None,
                "message": None,
                "message_type": None,
                "message_code": None,
                "currency": cur,
            }
        ev["event_sales_status"] = ss
    return ev


def _money(value: float, cur: str) -> dict[str, Any]:
    cents = round(value * 100)
    return {
        "currency": cur,
        "value": cents,
        "major_value": f"{cents / 100:.2f}",
        "display": f"{cents / 100:.2f} {cur}",
    }


def _eb_tickets(perf: Performance, rec: Rec, cur: str) -> dict[str, Any]:
    lo, hi = perf.price if perf.price else (0.0, 0.0)
    return {
        "has_available_tickets": not perf.cancelled and perf.listing_count > 0,
        "minimum_ticket_price": _money(lo * rec.price_factor, cur),
        "maximum_ticket_price": _money(hi * rec.price_factor, cur),
        "is_sold_out": perf.listing_count == 0,
        "start_sales_date": None,
        "waitlist_available": False,
    }


def _eb_base(world: World, rec: Rec) -> dict[str, Any]:
    perf = rec.perf
    tz = tzone(perf.tz)
    end = rec.start + timedelta(minutes=perf.duration_min)
    given = eb_zone(world, rec)  # the venue's zone, or the organiser's by mistake
    desc = f"{rec.title} at {perf.venue.eb_name}." if not perf.online else f"{rec.title} (online)."
    logo_id = str(_h(rec.ext_id, "logo") % 900_000_000)
    return {
        "name": {"text": rec.title, "html": rec.title},
        "description": {"text": desc, "html": f"<P>{desc}</P>"},
        "url": f"https://www.eventbrite.com/e/{_slug(rec.title)}-tickets-{rec.ext_id}",
        "start": {
            "timezone": given,
            "local": naive_s(rec.start.astimezone(tz)),
            "utc": utc_z(_in_zone(rec.start, perf.tz, given)),
        },
        "end": {
            "timezone": given,
            "local": naive_s(end.astimezone(tz)),
            "utc": utc_z(_in_zone(end, perf.tz, given)),
        },
        "organization_id": perf.eb_org,
        "created": utc_z(rec.created),
        "changed": utc_z(rec.changed),
        "published": utc_z(rec.created + timedelta(minutes=5)),
        "capacity": None,
        "capacity_is_custom": None,
        "status": eb_status(rec, world.now),
        "currency": _currency(perf),
        "listed": True,
        "shareable": True,
        "online_event": perf.online,
        "tx_time_limit": 1200,
        "hide_start_date": False,
        "hide_end_date": False,
        "locale": "en_US",
        "is_locked": False,
        "privacy_setting": "unlocked",
        "is_series": False,
        "is_series_parent": False,
        "inventory_type": "limited",
        "is_reserved_seating": False,
        "show_pick_a_seat": False,
        "show_seatmap_thumbnail": False,
        "show_colors_in_seatmap_thumbnail": False,
        "source": "coyote",
        "is_free": perf.price is None,
        "version": None,
        "summary": desc[:140],
        "facebook_event_id": None,
        "logo_id": logo_id,
        "organizer_id": str(10_000_000_000 + _h(perf.eb_org) % 9_000_000_000),
        "venue_id": None if perf.online else perf.venue.eb_id,
        "category_id": _EB_CAT[perf.category],
        "subcategory_id": None,
        "format_id": "11" if perf.category == "community" else "6",
        "id": rec.ext_id,
        "resource_uri": f"https://www.eventbriteapi.com/v3/events/{rec.ext_id}/",
        "is_externally_ticketed": False,
        "series_id": None,
        "logo": {
            "crop_mask": None,
            "original": {
                "url": f"https://img.evbuc.com/images/{logo_id}/original.jpg",
                "width": 1600,
                "height": 800,
            },
            "id": logo_id,
            "url": f"https://img.evbuc.com/images/{logo_id}/1/original.jpg?h=200&w=450",
            "aspect_ratio": "2",
            "edge_color": None,
            "edge_color_set": True,
        },
    }


# ---------------- Meetup ----------------
def _iso_duration(minutes: int) -> str:
    h, m = divmod(minutes, 60)
    return f"PT{h}H" + (f"{m}M" if m else "")


def mu_status(rec: Rec, now: datetime) -> str:
    if rec.perf.cancelled:
        return "CANCELLED"
    return "PAST" if rec.start < now else "ACTIVE"


def mu_node(world: World, rec: Rec) -> dict[str, Any]:
    key = (MU, rec.ext_id)
    hit = world.cache.get(key)
    if hit is not None:
        return hit
    perf = rec.perf
    tz = tzone(perf.tz)
    start = rec.start.astimezone(tz)
    end = start + timedelta(minutes=perf.duration_min)
    group = perf.group
    urlname = group.urlname if group else "community"
    v = perf.venue
    junk = _h(rec.ext_id, "junk") % 10 == 0  # real Meetup venues carry junk values now and then
    venues = []
    if perf.online:
        venues = [
            {
                "id": "online",
                "name": "Online event",
                "address": "",
                "city": "",
                "state": "",
                "postalCode": "",
                "country": "",
                "lat": -8.521147,
                "lon": 179.1962,
                "venueType": "online",
            }
        ]
    else:
        venues = [
            {
                "id": v.eb_id[::-1],
                "name": v.name + (", " if junk else ""),
                "address": v.address,
                "city": v.city.name,
                "state": (v.city.state_code.lower() if junk else v.city.state_code),
                "postalCode": "meetup1" if junk else v.postal_code,
                "country": v.city.country_code.lower(),
                "lat": v.lat,
                "lon": v.lon,
                "venueType": "",
            }
        ]
    fee = None
    if perf.price is not None:
        fee = {
            "amount": perf.price[0],
            "currency": _currency(perf),
            "accepts": "CARDS",
            "required": True,
        }
    node: dict[str, Any] = {
        "id": rec.ext_id,
        "token": rec.mu_token,
        "title": rec.title,
        "eventUrl": f"https://www.meetup.com/{urlname}/events/{rec.ext_id}/",
        "createdTime": rec.created.astimezone(tz).isoformat(),
        "status": mu_status(rec, world.now),
        "dateTime": start.isoformat(timespec="seconds"),
        "endTime": end.isoformat(timespec="seconds"),
        "duration": _iso_duration(perf.duration_min),
        "eventType": "ONLINE" if perf.online else ("HYBRID" if junk else "PHYSICAL"),
        "description": f"{rec.title}. Talks, pizza and networking.",
        "group": (
            {"id": group.id, "name": group.name, "urlname": urlname, "timezone": perf.tz}
            if group
            else None
        ),
        "venues": venues,
        "rsvps": {"totalCount": _h(rec.ext_id, "rsvp") % 120},
        "featuredEventPhoto": (
            {
                "baseUrl": "https://secure-content.meetupstatic.com/images/classic-events/",
                "id": (photo := str(_h(rec.ext_id, "photo") % 10**9)),
                "highResUrl": (
                    f"https://secure-content.meetupstatic.com/images/classic-events/highres_{photo}.jpeg"
                ),
            }
            if _h(rec.ext_id, "ph") % 3 == 0
            else None
        ),
        "feeSettings": fee,
    }
    world.cache[key] = node
    return node


# ---------------- Spotify ----------------
def spotify_artist(a: Artist) -> dict[str, Any]:
    out: dict[str, Any] = {
        "external_urls": {"spotify": f"https://open.spotify.com/artist/{a.id}"},
        "genres": list(a.genres),
        "href": f"https://api.spotify.com/v1/artists/{a.id}",
        "id": a.id,
        "images": [
            {"height": s, "url": f"https://i.scdn.co/image/{a.image_seed}{s}", "width": s}
            for s in (640, 300, 64)
        ]
        if a.popularity > 10
        else [],
        "name": a.name,
        "popularity": a.popularity,
        "type": "artist",
        "uri": f"spotify:artist:{a.id}",
    }
    if a.followers is not None:
        out["followers"] = {"href": None, "total": a.followers}
    return out
