"""CSV export (the seed's data writer): append only the records not exported before."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.api.catalogue import Catalogue, Query
from services.api.render import iso, public
from shared.mongo import EXPORTS, Document, duplicates_only

CHUNK = 1000
EXPORT_FILE = "external_events.csv"

COLUMNS = (
    "id",
    "source",
    "external_id",
    "canonical_id",
    "title",
    "category",
    "subcategory",
    "status",
    "start_utc",
    "start_local",
    "timezone",
    "venue_name",
    "city",
    "state",
    "country",
    "lat",
    "lon",
    "price_min",
    "price_max",
    "currency",
    "ticket_url",
    "is_imported",
    "imported_event",
)


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such
# text gets a leading apostrophe, which spreadsheets show as text and do not display.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_row(event: dict[str, Any]) -> list[Any]:
    return [iso(v) for v in _cells(event)]


def inert(cell: Any) -> Any:
    """The cell as a spreadsheet may open it: text that would start a formula is quoted;
    numbers (a negative longitude) stay numbers."""
    if isinstance(cell, str) and cell.startswith(FORMULA_START):
        return "'" + cell
    return cell


def _cells(event: dict[str, Any]) -> list[Any]:
    start = event.get("start") or {}
    venue = event.get("venue") or {}
    price = event.get("price_range") or {}
    return [
        event.get("id"),
        event.get("source"),
        event.get("external_id"),
        event.get("canonical_id"),
        event.get("title"),
        event.get("category"),
        event.get("subcategory"),
        event.get("status"),
        start.get("utc"),
        start.get("local"),
        start.get("timezone"),
        venue.get("name"),
        venue.get("city"),
        venue.get("state"),
        venue.get("country"),
        venue.get("lat"),
        venue.get("lon"),
        price.get("min"),
        price.get("max"),
        price.get("currency"),
        event.get("ticket_url"),
        event.get("is_imported"),
        event.get("imported_event"),
    ]


class Exports:
    """The CSV export as shared state in the store: one document per exported record (its
    ``_id``, the row as first exported, and when), so every replica appends to and serves the
    same export, and a record is exported once whichever replica is asked."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.rows = db[EXPORTS]

    async def append(self, catalogue: Catalogue, query: Query) -> tuple[int, int]:
        """Append the matching records not exported before; (appended, total rows)."""
        appended = 0
        chunk: list[Document] = []
        now = datetime.now(UTC)
        async for event in catalogue.scan(query):
            chunk.append({"_id": str(event["_id"]), "at": now, "row": csv_row(public(event))})
            if len(chunk) == CHUNK:
                appended += await self._insert(chunk)
                chunk = []
        appended += await self._insert(chunk)
        return appended, await self.rows.count_documents({})

    async def _insert(self, docs: list[Document]) -> int:
        if not docs:
            return 0
        try:
            await self.rows.insert_many(docs, ordered=False)
        except BulkWriteError as err:
            return len(docs) - len(duplicates_only(err))  # those were exported before
        return len(docs)

    async def empty(self) -> bool:
        return await self.rows.find_one({}, {"_id": 1}) is None

    async def lines(self) -> AsyncIterator[bytes]:
        """The CSV file: the header, then every row in the order exported."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        cursor = self.rows.find({}, {"row": 1}).sort([("at", 1), ("_id", 1)]).hint("at_id")
        async for doc in cursor:
            # Neutralised as written out, so rows stored before this rule are safe too.
            writer.writerow([inert(cell) for cell in doc.get("row") or []])
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()
