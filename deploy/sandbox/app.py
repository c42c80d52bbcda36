"""The ASGI app: all fake providers under path prefixes, plus /_sandbox control endpoints."""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.sandbox import render
from deploy.sandbox.control import Fault, Limits, State, Window
from deploy.sandbox.credentials import (
    EB_TOKEN,
    MU_TOKEN,
    SG_ID,
    SG_SECRET,
    SP_ID,
    SP_SECRET,
    TM_KEY,
)
from deploy.sandbox.world import EB, MU, SG, TM, Rec, Venue, World

SPOTIFY = "spotify"
ALL_PROVIDERS = (TM, SG, EB, MU, SPOTIFY)


Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]


def jresp(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def _int(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    return int(value)  # ValueError is turned into the provider's 400 by the caller


def _basic(request: Request) -> tuple[str, str] | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, pw


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


_TM_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


class BadRequestError(Exception):
    """A client error that the provider's own error shape reports."""


class Sandbox:
    """Owns the world and the runtime state; one handler per provider endpoint."""

    def __init__(self, world: World, limits: Limits | None = None, state: State | None = None):
        self.world = world
        self.state = state or State(limits or Limits())
        self.eb_venues: dict[str, Venue] = {v.eb_id: v for v in world.venues}
        self.routes: dict[str, list[tuple[str, re.Pattern[str], str, Handler]]] = {
            TM: [
                ("GET", re.compile(r"discovery/v2/events(?:\.json)?"), "events", self.tm_events),
                (
                    "GET",
                    re.compile(r"discovery/v2/events/(?P<id>[^/]+?)(?:\.json)?"),
                    "event",
                    self.tm_event,
                ),
                ("GET", re.compile(r"discovery/v2/venues(?:\.json)?"), "venues", self.tm_venues),
                (
                    "GET",
                    re.compile(r"discovery/v2/attractions(?:\.json)?"),
                    "attractions",
                    self.tm_attractions,
                ),
                (
                    "GET",
                    re.compile(r"discovery/v2/classifications(?:\.json)?"),
                    "classifications",
                    self.tm_classifications,
                ),
            ],
            SG: [
                ("GET", re.compile(r"2/events"), "events", self.sg_events),
                ("GET", re.compile(r"2/events/(?P<id>[^/]+)"), "event", self.sg_event),
                ("GET", re.compile(r"2/venues"), "venues", self.sg_venues),
                ("GET", re.compile(r"2/performers"), "performers", self.sg_performers),
                ("GET", re.compile(r"2/taxonomies"), "taxonomies", self.sg_taxonomies),
            ],
            EB: [
                ("GET", re.compile(r"v3/users/me/organizations"), "organizations", self.eb_orgs),
                (
                    "GET",
                    re.compile(r"v3/organizations/(?P<id>[^/]+)/events"),
                    "org_events",
                    self.eb_org_events,
                ),
                (
                    "GET",
                    re.compile(r"v3/venues/(?P<id>[^/]+)/events"),
                    "venue_events",
                    self.eb_venue_events,
                ),
                ("GET", re.compile(r"v3/events/(?P<id>\d+)"), "event", self.eb_event),
                ("GET", re.compile(r"v3/venues/(?P<id>[^/]+)"), "venue", self.eb_venue),
                ("GET", re.compile(r"v3/categories"), "categories", self.eb_categories),
            ],
            MU: [("POST", re.compile(r"gql-ext"), "gql-ext", self.mu_gql)],
            SPOTIFY: [
                ("POST", re.compile(r"accounts/api/token"), "token", self.sp_token),
                ("GET", re.compile(r"v1/artists/(?P<id>[^/]+)"), "artist", self.sp_artist),
                ("GET", re.compile(r"v1/search"), "search", self.sp_search),
            ],
        }

    # ------------------------------------------------------------ dispatch
    async def dispatch(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        rest = request.path_params["rest"].strip("/")
        for method, pattern, name, handler in self.routes[provider]:
            m = pattern.fullmatch(rest)
            if m and request.method == method:
                return await self._call(request, provider, name, handler, m.groupdict())
        return await self._call(request, provider, "unknown", self.not_found, {})

    async def _call(
        self, request: Request, provider: str, name: str, handler: Handler, params: dict[str, str]
    ) -> Response:
        st = self.state
        st.stats.calls[provider] += 1
        st.stats.endpoints[(provider, name)] += 1
        fault = st.take_fault(provider)
        if fault is not None:
            early = await self._fault_before(fault)
            if early is not None:
                st.stats.statuses[(provider, early.status_code)] += 1
                return early
        try:
            resp = await handler(request, params)
        except ValueError as err:  # e.g. a non-integer paging parameter
            resp = self.bad_request(provider, str(err))
        if fault is not None and fault.kind == "malformed_json":
            resp = Response(
                b'{"data": {"events": [NaN, {"id": 1,, }]}<!-- upstream -->',
                200,
                media_type="application/json",
            )
        elif fault is not None and fault.kind == "truncated":
            body = bytes(resp.body)
            resp = Response(body[: max(1, len(body) // 2)], 200, media_type="application/json")
        st.stats.statuses[(provider, resp.status_code)] += 1
        if resp.status_code in (406, 429):
            st.stats.throttled[provider] += 1
        return resp

    async def _fault_before(self, fault: Fault) -> Response | None:
        if fault.kind == "5xx_burst":
            code = (503, 502, 500)[(fault.served - 1) % 3]
            if code == 502:
                html = b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway"
                return Response(html, 502, media_type="text/html")
            msg = "Service Unavailable" if code == 503 else "Internal Server Error"
            return jresp(
                {"error": msg.upper().replace(" ", "_"), "status": code, "message": msg}, code
            )
        if fault.kind == "slow":
            await asyncio.sleep((fault.delay_ms if fault.delay_ms is not None else 2000) / 1000)
        elif fault.kind == "timeout":
            # Longer than any sane client timeout; the answer, if anyone still waits, is normal.
            await asyncio.sleep((fault.delay_ms if fault.delay_ms is not None else 120_000) / 1000)
        return None

    def bad_request(self, provider: str, detail: str) -> Response:
        if provider == TM:
            return self._tm_error(400, "DIS1015", f"Invalid query parameter: {detail}")
        if provider == SG:
            return jresp({"status": 400, "error": f"Invalid parameter: {detail}"}, 400)
        if provider == EB:
            return self._eb_error(
                400, "ARGUMENTS_ERROR", f"There are errors with your arguments: {detail}"
            )
        return self._sp_error(400, detail) if provider == SPOTIFY else self._gql_error(detail)

    async def not_found(self, request: Request, params: dict[str, str]) -> Response:
        provider = request.path_params["provider"]
        if provider == TM:
            return self._tm_error(404, "DIS1001", "Resource not found")
        if provider == SG:
            return jresp({"status": 404, "error": "Not Found"}, 404)
        if provider == EB:
            return jresp(
                {
                    "error": "NOT_FOUND",
                    "error_description": "The path you requested does not exist.",
                    "status_code": 404,
                },
                404,
            )
        if provider == MU:
            return jresp({"errors": [{"message": "Not Found"}]}, 404)
        return jresp({"error": {"status": 404, "message": "Service not found"}}, 404)

    # ------------------------------------------------------------ Ticketmaster
    def _tm_headers(self) -> dict[str, str]:
        st = self.state
        quota = st.limits.tm_daily_quota
        start = st.tm_day_start if st.tm_day_start is not None else st.wall()
        if quota <= 0:
            # Quota switched off: say nothing rather than "0 available".
            return {}
        return {
            "Rate-Limit": str(quota),
            "Rate-Limit-Available": str(max(0, quota - st.tm_used)),
            "Rate-Limit-Over": str(st.tm_over),
            "Rate-Limit-Reset": str(int((start + 86400) * 1000)),
        }

    def _tm_error(self, status: int, code: str, detail: str) -> Response:
        body = {
            "errors": [
                {
                    "code": code,
                    "detail": detail,
                    "status": str(status),
                    "_links": {"about": {"href": f"/discovery/v2/errors.html#{code}"}},
                }
            ]
        }
        return jresp(body, status, self._tm_headers())

    def _tm_fault(self, status: int, text: str, code: str) -> Response:
        return jresp(
            {"fault": {"faultstring": text, "detail": {"errorcode": code}}},
            status,
            self._tm_headers(),
        )

    def _tm_gate(self, request: Request) -> Response | None:
        """API key, then spike arrest, then the daily quota, as Apigee evaluates them."""
        st, lim = self.state, self.state.limits
        if request.query_params.get("apikey") != TM_KEY:
            return self._tm_fault(401, "Invalid ApiKey", "oauth.v2.InvalidApiKey")
        now = st.clock()
        if lim.tm_per_second > 0:
            if st.tm_spike.used(now, 1.0) >= lim.tm_per_second:
                return self._tm_fault(
                    429,
                    f"Spike arrest violation. Allowed rate : {lim.tm_per_second:g}ps",
                    "policies.ratelimit.SpikeArrestViolation",
                )
            st.tm_spike.add(now)
        wall = st.wall()
        if st.tm_day_start is None or wall >= st.tm_day_start + 86400:
            st.tm_day_start, st.tm_used, st.tm_over = wall, 0, 0
        if lim.tm_daily_quota > 0 and st.tm_used >= lim.tm_daily_quota:
            st.tm_over += 1
            return self._tm_fault(
                429,
                f"Rate limit quota violation. Quota limit exceeded. Identifier : {TM_KEY}",
                "policies.ratelimit.QuotaViolation",
            )
        st.tm_used += 1
        return None

    def _tm_page_args(self, request: Request, cap: int = 200) -> tuple[int, int]:
        q = request.query_params
        size = min(max(_int(q.get("size"), 20), 1), cap)
        page = max(_int(q.get("page"), 0), 0)
        return size, page

    def _tm_list(
        self, request: Request, path: str, key: str, items: list[Any], render_one: Any
    ) -> Response:
        try:
            size, page = self._tm_page_args(request)
        except ValueError:
            return self._tm_error(400, "DIS1015", "Query param size/page must be an integer")
        total = len(items)
        if (page + 1) * size > 1000:
            return self._tm_error(
                400,
                "DIS1035",
                "API Limits Exceeded: Max paging depth exceeded. (page * size) must be less "
                "than 1,000",
            )
        chunk = items[page * size : (page + 1) * size]
        pages = math.ceil(total / size) if total else 0
        keep = [
            (k, v) for k, v in request.query_params.multi_items() if k not in ("page", "apikey")
        ]
        qs = "&".join(f"{k}={v}" for k, v in keep if k != "size")
        base = f"/discovery/v2/{path}?{qs + '&' if qs else ''}size={size}"
        links: dict[str, Any] = {"self": {"href": f"{base}&page={page}"}}
        if page + 1 < pages:
            links["next"] = {"href": f"{base}&page={page + 1}"}
        if page > 0:
            links["prev"] = {"href": f"{base}&page={page - 1}"}
        body: dict[str, Any] = {}
        if chunk:
            # The real API leaves _embedded out entirely when nothing matched.
            body["_embedded"] = {key: [render_one(x) for x in chunk]}
        body["_links"] = links
        body["page"] = {"size": size, "totalElements": total, "totalPages": pages, "number": page}
        return jresp(body, 200, self._tm_headers())

    async def tm_events(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._tm_gate(request)) is not None:
            return gate
        q = request.query_params
        bounds: list[datetime | None] = []
        for name in ("startDateTime", "endDateTime"):
            raw = q.get(name)
            if raw and not _TM_DATE.match(raw):
                return self._tm_error(
                    400,
                    "DIS1015",
                    "Query param with date must be of valid format "
                    "YYYY-MM-DDTHH:mm:ssZ {example: 2020-08-01T14:00:00Z }",
                )
            bounds.append(datetime.strptime(raw, "%Y-%m-%dT%H:%M:%S%z") if raw else None)
        recs = self.world.window(TM, bounds[0], bounds[1])
        city = (q.get("city") or "").casefold()
        country = (q.get("countryCode") or "").upper()
        keyword = (q.get("keyword") or "").casefold()
        classes = {c.strip().casefold() for c in (q.get("classificationName") or "").split(",")}
        classes.discard("")
        inc = {
            "TBA": (q.get("includeTBA") or "no").lower(),
            "TBD": (q.get("includeTBD") or "no").lower(),
        }
        out: list[Rec] = []
        for rec in recs:
            perf = rec.perf
            flag = rec.tm_date_flag
            if flag is not None and inc[flag] not in ("yes", "only"):
                continue
            if flag is None and "only" in inc.values():
                continue
            if city and perf.venue.city.name.casefold() != city:
                continue
            if country and perf.venue.city.country_code != country:
                continue
            if (
                keyword
                and keyword not in rec.title.casefold()
                and not any(keyword in p.name.casefold() for p in perf.performers)
            ):
                continue
            if classes:
                names = {render._TM_SEGMENTS[perf.category][1].casefold(), perf.category}
                names.update(p.genre.casefold() for p in perf.performers)
                if not classes & names:
                    continue
            out.append(rec)
        if (q.get("sort") or "").lower() == "date,desc":
            out.reverse()
        return self._tm_list(
            request, "events.json", "events", out, lambda r: render.tm_event(self.world, r)
        )

    async def tm_event(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._tm_gate(request)) is not None:
            return gate
        rec = self.world.by_id[TM].get(params["id"])
        if rec is None:
            return self._tm_error(
                404,
                "DIS1004",
                f"Resource not found with provided criteria (locale=en-us, id={params['id']})",
            )
        return jresp(render.tm_event(self.world, rec), 200, self._tm_headers())

    async def tm_venues(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._tm_gate(request)) is not None:
            return gate
        q = request.query_params
        kw = (q.get("keyword") or "").casefold()
        city = (q.get("city") or "").casefold()
        cc = (q.get("countryCode") or "").upper()
        items = [
            v
            for v in self.world.venues
            if (not kw or kw in v.name.casefold())
            and (not city or v.city.name.casefold() == city)
            and (not cc or v.city.country_code == cc)
        ]
        return self._tm_list(request, "venues.json", "venues", items, render.tm_venue)

    async def tm_attractions(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._tm_gate(request)) is not None:
            return gate
        kw = (request.query_params.get("keyword") or "").casefold()
        items = [p for p in self.world.performers if not kw or kw in p.name.casefold()]
        return self._tm_list(
            request, "attractions.json", "attractions", items, render.tm_attraction
        )

    async def tm_classifications(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._tm_gate(request)) is not None:
            return gate
        segs: dict[str, tuple[str, set[str]]] = {}
        for p in self.world.performers:
            seg_id, seg = render._TM_SEGMENTS[p.category]
            segs.setdefault(seg_id, (seg, set()))[1].add(p.genre)
        items = []
        for seg_id, (seg, genres) in sorted(segs.items()):
            gs = [render._tm_classification("music", g)["genre"] for g in sorted(genres)]
            items.append(
                {
                    "_links": {"self": {"href": f"/discovery/v2/classifications/{seg_id}"}},
                    "segment": {"id": seg_id, "name": seg, "_embedded": {"genres": gs}},
                }
            )
        return self._tm_list(request, "classifications.json", "classifications", items, lambda x: x)

    # ------------------------------------------------------------ SeatGeek
    def _sg_gate(self, request: Request) -> Response | None:
        q = request.query_params
        cid, secret = q.get("client_id"), q.get("client_secret")
        basic = _basic(request)
        if cid is None and basic is not None:
            cid, secret = basic[0], basic[1] or None
        if cid != SG_ID or secret not in (None, SG_SECRET):
            return jresp({"status": 403, "error": "Invalid client_id or client_secret"}, 403)
        st, lim = self.state, self.state.limits
        now = st.clock()
        if lim.sg_per_second > 0:
            if st.sg_spike.used(now, 1.0) >= lim.sg_per_second:
                # SeatGeek publishes no limit; abusive clients just get 406 Not Acceptable.
                return jresp({"status": 406, "error": "Not Acceptable"}, 406)
            st.sg_spike.add(now)
        return None

    def _sg_paging(self, request: Request) -> tuple[int, int]:
        q = request.query_params
        return max(_int(q.get("page"), 1), 1), min(max(_int(q.get("per_page"), 10), 1), 50)

    @staticmethod
    def _sg_time(raw: str) -> datetime:
        raw = raw.removesuffix("Z")
        fmt = "%Y-%m-%d" if len(raw) == 10 else "%Y-%m-%dT%H:%M:%S"
        return datetime.strptime(raw, fmt).replace(tzinfo=UTC)

    def _sg_meta(self, total: int, page: int, per_page: int) -> dict[str, Any]:
        return {"total": total, "took": 3, "page": page, "per_page": per_page, "geolocation": None}

    async def sg_events(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._sg_gate(request)) is not None:
            return gate
        q = request.query_params
        try:
            page, per_page = self._sg_paging(request)
            lo = self._sg_time(q["datetime_utc.gte"]) if q.get("datetime_utc.gte") else None
            hi = self._sg_time(q["datetime_utc.lte"]) if q.get("datetime_utc.lte") else None
            if q.get("datetime_utc.gt"):
                lo = self._sg_time(q["datetime_utc.gt"]) + timedelta(seconds=1)
            if q.get("datetime_utc.lt"):
                hi = self._sg_time(q["datetime_utc.lt"]) - timedelta(seconds=1)
        except ValueError as err:
            return jresp({"status": 400, "error": f"Invalid parameter: {err}"}, 400)
        if page * per_page > 10000:
            # Deep pages come back empty with total 0 instead of an error.
            return jresp({"events": [], "meta": self._sg_meta(0, page, per_page), "in_hand": {}})
        recs = self.world.window(SG, lo, hi)
        tax = (q.get("taxonomies.name") or "").casefold()
        city = (q.get("venue.city") or "").casefold()
        state = (q.get("venue.state") or "").upper()
        text = (q.get("q") or "").casefold()
        slug = q.get("performers.slug") or ""
        out = []
        for rec in recs:
            perf = rec.perf
            if tax and tax not in {t["name"] for t in render.sg_taxonomies(perf)}:
                continue
            if city and perf.venue.city.name.casefold() != city:
                continue
            if state and perf.venue.city.state_code != state:
                continue
            if text and text not in rec.title.casefold():
                continue
            if slug and slug not in {render._slug(p.name) for p in perf.performers}:
                continue
            out.append(rec)
        if (q.get("sort") or "").lower() == "datetime_utc.desc":
            out.reverse()
        chunk = out[(page - 1) * per_page : page * per_page]
        return jresp(
            {
                "events": [render.sg_event(self.world, r) for r in chunk],
                "meta": self._sg_meta(len(out), page, per_page),
                "in_hand": {},
            }
        )

    async def sg_event(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._sg_gate(request)) is not None:
            return gate
        rec = self.world.by_id[SG].get(params["id"])
        if rec is None or rec.perf.cancelled:
            # Cancelled events vanish from SeatGeek: the id just stops resolving.
            return jresp({"status": 404, "error": "Not Found"}, 404)
        return jresp(render.sg_event(self.world, rec))

    def _sg_simple(self, request: Request, key: str, items: list[dict[str, Any]]) -> Response:
        page, per_page = self._sg_paging(request)
        chunk = items[(page - 1) * per_page : page * per_page]
        return jresp({key: chunk, "meta": self._sg_meta(len(items), page, per_page)})

    async def sg_venues(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._sg_gate(request)) is not None:
            return gate
        q = request.query_params
        city = (q.get("city") or q.get("venue.city") or "").casefold()
        text = (q.get("q") or "").casefold()
        vs = sorted(self.world.venues, key=lambda v: v.sg_id)
        items = [
            render.sg_venue(v)
            for v in vs
            if (not city or v.city.name.casefold() == city)
            and (not text or text in v.sg_name.casefold())
        ]
        return self._sg_simple(request, "venues", items)

    async def sg_performers(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._sg_gate(request)) is not None:
            return gate
        q = request.query_params
        text = (q.get("q") or "").casefold()
        slug = q.get("slug") or ""
        ps = sorted(self.world.performers, key=lambda p: p.sg_id)
        items = [render.sg_performer(p) for p in ps if (not text or text in p.name.casefold())]
        if slug:
            items = [p for p in items if p["slug"] == slug]
        return self._sg_simple(request, "performers", items)

    async def sg_taxonomies(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._sg_gate(request)) is not None:
            return gate
        seen: dict[int, dict[str, Any]] = {}
        for perf in self.world.perfs[:2000]:
            for t in render.sg_taxonomies(perf):
                seen[t["id"]] = t
        return self._sg_simple(request, "taxonomies", [seen[k] for k in sorted(seen)])

    # ------------------------------------------------------------ Eventbrite
    @staticmethod
    def _eb_error(status: int, error: str, description: str) -> Response:
        return jresp(
            {"error": error, "error_description": description, "status_code": status}, status
        )

    def _eb_gate(self, request: Request) -> Response | None:
        token = _bearer(request) or request.query_params.get("token")
        if token != EB_TOKEN:
            return self._eb_error(401, "INVALID_AUTH", "The OAuth token you provided was invalid.")
        st, lim = self.state, self.state.limits
        if lim.eb_per_hour > 0:
            window = st.eb_hour.setdefault(token, Window())
            now = st.clock()
            if window.used(now, 3600) >= lim.eb_per_hour:
                return self._eb_error(
                    429,
                    "HIT_RATE_LIMIT",
                    "Hourly rate limit has been reached "
                    "for this token. Default rate limits are 2,000 calls per hour.",
                )
            window.add(now)
        return None

    @staticmethod
    def _expand(request: Request) -> set[str]:
        return {e.strip() for e in (request.query_params.get("expand") or "").split(",") if e}

    def _eb_page(self, request: Request, items: list[Any], key: str, render_one: Any) -> Response:
        q = request.query_params
        try:
            size = min(max(_int(q.get("page_size"), 50), 1), 200)
            offset = 0
            if q.get("continuation"):
                raw = base64.urlsafe_b64decode(q["continuation"].encode()).decode()
                offset = int(raw.removeprefix("o:"))
            elif q.get("page"):
                offset = (max(int(q["page"]), 1) - 1) * size
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self._eb_error(
                400,
                "ARGUMENTS_ERROR",
                "There are errors with your arguments: continuation - INVALID",
            )
        total = len(items)
        chunk = items[offset : offset + size]
        more = offset + size < total
        pagination: dict[str, Any] = {
            "object_count": total,
            "page_number": offset // size + 1,
            "page_size": size,
            "page_count": math.ceil(total / size) if total else 1,
            "has_more_items": more,
        }
        if more:
            pagination["continuation"] = base64.urlsafe_b64encode(
                f"o:{offset + size}".encode()
            ).decode()
        return jresp({"pagination": pagination, key: [render_one(x) for x in chunk]})

    def _eb_events(self, request: Request, recs: list[Rec]) -> Response:
        q = request.query_params
        now = self.world.now
        statuses = {s.strip() for s in (q.get("status") or "all").split(",")}
        tf = q.get("time_filter") or "all"
        out = []
        for rec in recs:
            end = rec.start + timedelta(minutes=rec.perf.duration_min)
            if tf == "current_future" and end < now:
                continue
            if tf == "past" and end >= now:
                continue
            # Filtering uses the *reported* status, so cancelled-but-"live" events slip through.
            if "all" not in statuses and render.eb_status(rec, now) not in statuses:
                continue
            out.append(rec)
        order = q.get("order_by") or "start_asc"
        if order == "start_desc":
            out.reverse()
        elif order.startswith("created"):
            out.sort(key=lambda r: (r.created, r.ext_id), reverse=order == "created_desc")
        expand = self._expand(request)
        return self._eb_page(
            request, out, "events", lambda r: render.eb_event(self.world, r, expand)
        )

    async def eb_orgs(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._eb_gate(request)) is not None:
            return gate
        orgs = [
            {
                "_type": "organization",
                "name": name,
                "vertical": "default",
                "parent_id": None,
                "locale": "en_US",
                "created": "2019-03-01T12:00:00Z",
                "image_id": None,
                "id": i,
            }
            for i, name in sorted(self.world.eb_orgs.items())
        ]
        return self._eb_page(request, orgs, "organizations", lambda x: x)

    async def eb_org_events(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._eb_gate(request)) is not None:
            return gate
        if params["id"] not in self.world.eb_orgs:
            return self._eb_error(
                404, "NOT_FOUND", "The organization you requested does not exist."
            )
        return self._eb_events(request, self.world.eb_by_org.get(params["id"], []))

    async def eb_venue_events(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._eb_gate(request)) is not None:
            return gate
        if params["id"] not in self.eb_venues:
            return self._eb_error(404, "NOT_FOUND", "The venue you requested does not exist.")
        return self._eb_events(request, self.world.eb_by_venue.get(params["id"], []))

    async def eb_event(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._eb_gate(request)) is not None:
            return gate
        rec = self.world.by_id[EB].get(params["id"])
        if rec is None:
            return self._eb_error(404, "NOT_FOUND", "The event you requested does not exist.")
        return jresp(render.eb_event(self.world, rec, self._expand(request)))

    async def eb_venue(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._eb_gate(request)) is not None:
            return gate
        venue = self.eb_venues.get(params["id"])
        if venue is None:
            return self._eb_error(404, "NOT_FOUND", "The venue you requested does not exist.")
        return jresp(render.eb_venue(venue))

    async def eb_categories(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._eb_gate(request)) is not None:
            return gate
        cats = [render.eb_category(c[0]) for c in render.EB_CATEGORIES]
        resp = self._eb_page(request, cats, "categories", lambda x: x)
        body = orjson.loads(resp.body)
        return jresp({"locale": "en_US", **body})

    # ------------------------------------------------------------ Meetup
    @staticmethod
    def _gql_error(message: str, classification: str = "ValidationError") -> Response:
        # GraphQL errors come back with HTTP 200: clients must inspect every body.
        return jresp(
            {
                "errors": [
                    {
                        "message": message,
                        "locations": [{"line": 1, "column": 1}],
                        "extensions": {"classification": classification},
                    }
                ]
            }
        )

    async def mu_gql(self, request: Request, params: dict[str, str]) -> Response:
        if _bearer(request) != MU_TOKEN:
            return jresp(
                {
                    "errors": [
                        {"message": "Not authorized", "extensions": {"code": "UNAUTHENTICATED"}}
                    ]
                },
                401,
            )
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return self._gql_error("Invalid JSON body", "InvalidSyntax")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return self._gql_error("Missing 'query' in request body", "InvalidSyntax")
        variables = payload.get("variables") or {}
        if not isinstance(variables, dict):
            return self._gql_error("'variables' must be an object", "InvalidSyntax")
        query: str = payload["query"]
        root = re.search(r"\b(groupByUrlname|eventSearch)\b", query)
        if root is None:
            field = re.search(r"\{\s*(\w+)", query)
            name = field.group(1) if field else "?"
            return self._gql_error(
                f"Validation error (FieldUndefined@[{name}]) : Field '{name}' "
                "in type 'Query' is undefined"
            )
        try:
            args = self._mu_args(variables)
        except BadRequestError as err:
            return self._gql_error(str(err))
        st, lim = self.state, self.state.limits
        cost = 1 + (args["first"] + 9) // 10
        now = st.clock()
        if lim.meetup_points > 0:
            used = st.mu_points.used(now, lim.meetup_window_s)
            if used + cost > lim.meetup_points:
                st.stats.throttled[MU] += 1
                reset = datetime.now(UTC) + timedelta(seconds=lim.meetup_window_s)
                return jresp(
                    {
                        "data": None,
                        "errors": [
                            {
                                "message": "Too many requests, please try again shortly.",
                                "extensions": {
                                    "code": "RATE_LIMITED",
                                    "consumedPoints": int(used),
                                    "resetAt": reset.isoformat(timespec="seconds"),
                                },
                            }
                        ],
                    }
                )
            st.mu_points.add(now, cost)
        if root.group(1) == "groupByUrlname":
            return self._mu_group(args)
        return self._mu_search(args)

    _MU_STATUSES = frozenset(
        {
            "ACTIVE",
            "AUTOSCHED",
            "AUTOSCHED_CANCELLED",
            "AUTOSCHED_DRAFT",
            "AUTOSCHED_FINISHED",
            "BLOCKED",
            "CANCELLED",
            "CANCELLED_PERM",
            "DRAFT",
            "PAST",
            "PENDING",
            "PROPOSED",
            "TEMPLATE",
        }
    )

    def _mu_args(self, v: dict[str, Any]) -> dict[str, Any]:
        def bad(name: str, detail: str) -> BadRequestError:
            return BadRequestError(f"Variable '{name}' has an invalid value: {detail}")

        first = v.get("first", 20)
        if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= 200:
            raise bad("first", f"Expected a value between 1 and 200 but was '{first}'")
        status = v.get("status")
        if status is not None and status not in self._MU_STATUSES:
            raise bad(
                "status",
                f"Invalid input for enum 'EventStatus'. No value found for name '{status}'",
            )
        out: dict[str, Any] = {"first": first, "status": status, "after": v.get("after")}
        for name in ("afterDateTime", "beforeDateTime", "startDateRange", "endDateRange"):
            raw = v.get(name)
            if raw is None:
                continue
            try:
                parsed = datetime.fromisoformat(str(raw))
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                raise bad(name, f"Failed to parse input value {raw} as ZonedDateTime")
            key = "lo" if name in ("afterDateTime", "startDateRange") else "hi"
            out[key] = parsed
        for name in ("lat", "lon", "radius"):
            if v.get(name) is not None:
                if not isinstance(v[name], int | float) or isinstance(v[name], bool):
                    raise bad(name, f"Expected type 'Float' but was '{v[name]}'")
                out[name] = float(v[name])
        out["urlname"] = v.get("urlname")
        out["query"] = v.get("query")
        return out

    def _mu_connection(self, recs: list[Rec], args: dict[str, Any]) -> dict[str, Any]:
        now = self.world.now
        if args.get("status"):
            recs = [r for r in recs if render.mu_status(r, now) == args["status"]]
        start = 0
        if args.get("after"):
            try:
                tok, _, ms = base64.b64decode(args["after"]).decode().rpartition(":")
                pos = next((i for i, r in enumerate(recs) if r.mu_token == tok), None)
                if pos is None:
                    cut = int(ms) / 1000
                    pos = next(
                        (i - 1 for i, r in enumerate(recs) if r.start.timestamp() > cut),
                        len(recs) - 1,
                    )
                start = pos + 1
            except (ValueError, binascii.Error, UnicodeDecodeError) as err:
                raise BadRequestError(f"Invalid cursor: {args['after']}") from err
        chunk = recs[start : start + args["first"]]
        edges = [
            {"cursor": self._mu_cursor(r), "node": render.mu_node(self.world, r)} for r in chunk
        ]
        return {
            "totalCount": len(recs),
            "pageInfo": {
                "hasNextPage": start + len(chunk) < len(recs),
                "endCursor": edges[-1]["cursor"] if edges else None,
            },
            "edges": edges,
        }

    @staticmethod
    def _mu_cursor(rec: Rec) -> str:
        return base64.b64encode(
            f"{rec.mu_token}:{int(rec.start.timestamp() * 1000)}".encode()
        ).decode()

    def _mu_window(self, recs: list[Rec], args: dict[str, Any]) -> list[Rec]:
        lo, hi = args.get("lo"), args.get("hi")
        return [r for r in recs if (lo is None or r.start >= lo) and (hi is None or r.start <= hi)]

    def _mu_group(self, args: dict[str, Any]) -> Response:
        urlname = args["urlname"]
        if not isinstance(urlname, str) or not urlname:
            return self._gql_error(
                "Variable 'urlname' has coerced Null value for NonNull type 'String!'"
            )
        group = self.world.groups_by_urlname.get(urlname)
        recs = self.world.mu_by_group.get(urlname, [])
        now = self.world.now
        if group is None or not any(r.start >= now and not r.perf.cancelled for r in recs):
            # Quirk: the group comes back null when it has nothing upcoming.
            return jresp({"data": {"groupByUrlname": None}})
        try:
            conn = self._mu_connection(self._mu_window(recs, args), args)
        except BadRequestError as err:
            return self._gql_error(str(err))
        return jresp(
            {
                "data": {
                    "groupByUrlname": {
                        "id": group.id,
                        "name": group.name,
                        "urlname": group.urlname,
                        "events": conn,
                    }
                }
            }
        )

    def _mu_search(self, args: dict[str, Any]) -> Response:
        lo, hi = args.get("lo"), args.get("hi")
        recs = self.world.window(MU, lo, hi)
        text = (args.get("query") or "").casefold()
        lat, lon = args.get("lat"), args.get("lon")
        radius = args.get("radius", 25.0)
        out = []
        for rec in recs:
            if text and text not in rec.title.casefold():
                continue
            if lat is not None and lon is not None:
                v = rec.perf.venue
                if rec.perf.online or _miles(lat, lon, v.lat, v.lon) > radius:
                    continue
            out.append(rec)
        try:
            conn = self._mu_connection(out, args)
        except BadRequestError as err:
            return self._gql_error(str(err))
        return jresp({"data": {"eventSearch": conn}})

    # ------------------------------------------------------------ Spotify
    @staticmethod
    def _sp_error(
        status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> Response:
        return jresp({"error": {"status": status, "message": message, **extra}}, status, headers)

    async def sp_token(self, request: Request, params: dict[str, str]) -> Response:
        # Parsed by hand: starlette's form parser needs python-multipart, which isn't installed.
        form = {
            k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()
        }
        creds = _basic(request) or (form.get("client_id", ""), form.get("client_secret", ""))
        if creds != (SP_ID, SP_SECRET):
            return jresp({"error": "invalid_client", "error_description": "Invalid client"}, 400)
        if form.get("grant_type") != "client_credentials":
            return jresp(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant_type parameter is missing",
                },
                400,
            )
        st = self.state
        token = "BQ" + secrets.token_urlsafe(48)
        ttl = st.limits.spotify_token_ttl_s
        st.sp_tokens[token] = st.clock() + ttl
        return jresp(
            {"access_token": token, "token_type": "Bearer", "expires_in": max(0, math.ceil(ttl))}
        )

    def _sp_gate(self, request: Request) -> Response | None:
        st, lim = self.state, self.state.limits
        token = _bearer(request)
        if not token:
            return self._sp_error(401, "No token provided")
        expiry = st.sp_tokens.get(token)
        if expiry is None:
            return self._sp_error(401, "Invalid access token")
        now = st.clock()
        if now >= expiry:
            return self._sp_error(401, "The access token expired")
        if lim.spotify_daily_quota > 0 and st.sp_day.used(now, 86400) >= lim.spotify_daily_quota:
            # Quota exhaustion: no Retry-After, the client should stop for the day.
            return self._sp_error(429, "API rate limit exceeded", reason="QUOTA_EXCEEDED")
        if lim.spotify_window_requests > 0:
            span = lim.spotify_window_s
            if st.sp_window.used(now, span) >= lim.spotify_window_requests:
                oldest = st.sp_window.oldest() or now
                retry = max(1, math.ceil(oldest + span - now))
                return self._sp_error(429, "API rate limit exceeded", {"Retry-After": str(retry)})
            st.sp_window.add(now)
        st.sp_day.add(now)
        return None

    async def sp_artist(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._sp_gate(request)) is not None:
            return gate
        artist = self.world.artists_by_id.get(params["id"])
        if artist is None:
            if not re.fullmatch(r"[0-9A-Za-z]{22}", params["id"]):
                return self._sp_error(400, "invalid id")
            return self._sp_error(404, "Resource not found")
        return jresp(render.spotify_artist(artist))

    async def sp_search(self, request: Request, params: dict[str, str]) -> Response:
        if (gate := self._sp_gate(request)) is not None:
            return gate
        q = request.query_params
        text = (q.get("q") or "").strip()
        if not text:
            return self._sp_error(400, "No search query")
        types = {t.strip() for t in (q.get("type") or "").split(",") if t.strip()}
        if not types:
            return self._sp_error(400, "Missing parameter type")
        if "artist" not in types:
            return self._sp_error(400, "Bad search type field")
        try:
            limit, offset = _int(q.get("limit"), 20), _int(q.get("offset"), 0)
        except ValueError:
            return self._sp_error(400, "Invalid limit")
        if not 1 <= limit <= 50:
            return self._sp_error(400, "Invalid limit")
        if not 0 <= offset <= 1000:
            return self._sp_error(400, "Invalid offset")
        words = re.sub(r"\b(artist|genre):", "", text).casefold().replace('"', "").split()
        hits = [a for a in self.world.artists if all(w in a.name.casefold() for w in words)]
        hits.sort(key=lambda a: (-a.popularity, a.id))
        base = f"https://api.spotify.com/v1/search?query={quote(text)}&type=artist"
        total = len(hits)
        nxt = f"{base}&offset={offset + limit}&limit={limit}" if offset + limit < total else None
        prev = f"{base}&offset={max(0, offset - limit)}&limit={limit}" if offset > 0 else None
        return jresp(
            {
                "artists": {
                    "href": f"{base}&offset={offset}&limit={limit}",
                    "items": [render.spotify_artist(a) for a in hits[offset : offset + limit]],
                    "limit": limit,
                    "next": nxt,
                    "offset": offset,
                    "previous": prev,
                    "total": total,
                }
            }
        )

    # ------------------------------------------------------------ control
    async def c_health(self, request: Request) -> Response:
        w = self.world
        return jresp(
            {
                "status": "ok",
                "now": render.utc_z(w.now),
                "seed": w.seed,
                "performances": len(w.perfs),
            }
        )

    async def c_truth(self, request: Request) -> Response:
        w = self.world
        return jresp({"now": render.utc_z(w.now), "seed": w.seed, "clusters": w.ground_truth()})

    async def c_directory(self, request: Request) -> Response:
        """What a real account would be configured with: Meetup group urlnames (the API has
        no "list all groups") and Eventbrite organization ids (also discoverable through
        ``users/me/organizations/``)."""
        w = self.world
        return jresp(
            {
                "meetup_groups": sorted(w.groups_by_urlname),
                "eventbrite_organizations": sorted(w.eb_orgs),
            }
        )

    async def c_stats(self, request: Request) -> Response:
        return jresp(self.state.stats.as_dict())

    async def c_advance(self, request: Request) -> Response:
        try:
            hours = float(request.query_params.get("hours", "24"))
        except ValueError:
            return jresp({"error": "hours must be a number"}, 400)
        if not 0 <= hours <= 24 * 365:
            return jresp({"error": "hours must be between 0 and 8760"}, 400)
        summary = self.world.advance(hours)
        return jresp({"now": render.utc_z(self.world.now), **summary})

    async def c_trade(self, request: Request) -> Response:
        try:
            hours = float(request.query_params.get("hours", "24"))
        except ValueError:
            return jresp({"error": "hours must be a number"}, 400)
        if not 0 < hours <= 24 * 30:
            return jresp({"error": "hours must be above 0 and at most 720"}, 400)
        return jresp({"now": render.utc_z(self.world.now), "repriced": self.world.trade(hours)})

    async def c_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.faults.clear()
            return jresp({"faults": []})
        if request.method == "GET":
            return jresp({"faults": [vars_fault(f) for f in self.state.faults]})
        try:
            fault = self.state.add_fault(orjson.loads(await request.body()), ALL_PROVIDERS)
        except (ValueError, orjson.JSONDecodeError) as err:
            return jresp({"error": str(err)}, 400)
        return jresp(
            {"queued": vars_fault(fault), "faults": [vars_fault(f) for f in self.state.faults]}
        )

    async def c_limits(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = orjson.loads(await request.body())
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                self.state.limits.update(body)
            except (ValueError, orjson.JSONDecodeError) as err:
                return jresp({"error": str(err)}, 400)
        return jresp(self.state.limits.as_dict())

    async def c_reset(self, request: Request) -> Response:
        self.state.reset()
        return jresp({"reset": True, "limits": self.state.limits.as_dict()})


def vars_fault(f: Fault) -> dict[str, Any]:
    return {
        "provider": f.provider,
        "kind": f.kind,
        "remaining": f.remaining,
        "delay_ms": f.delay_ms,
    }


def _miles(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 3958.8 * 2 * math.asin(math.sqrt(a))


def create_app(world: World, limits: Limits | None = None, state: State | None = None) -> Starlette:
    """Build the ASGI app; tests pass a State with fake clocks to drive the limits."""
    sb = Sandbox(world, limits, state)
    routes = [
        Route("/_sandbox/health", sb.c_health, methods=["GET"]),
        Route("/_sandbox/truth", sb.c_truth, methods=["GET"]),
        Route("/_sandbox/stats", sb.c_stats, methods=["GET"]),
        Route("/_sandbox/directory", sb.c_directory, methods=["GET"]),
        Route("/_sandbox/clock/advance", sb.c_advance, methods=["POST"]),
        Route("/_sandbox/market/trade", sb.c_trade, methods=["POST"]),
        Route("/_sandbox/faults", sb.c_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/limits", sb.c_limits, methods=["GET", "POST"]),
        Route("/_sandbox/reset", sb.c_reset, methods=["POST"]),
    ]
    for provider in ALL_PROVIDERS:
        routes.append(
            Route(f"/{provider}/{{rest:path}}", _bind(sb, provider), methods=["GET", "POST"])
        )
    app = Starlette(routes=routes)
    app.state.sandbox = sb
    return app


def _bind(sb: Sandbox, provider: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        request.path_params["provider"] = provider
        return await sb.dispatch(request)

    return endpoint
