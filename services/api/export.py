"""CSV export (the seed's data writer): append only the records not already in the file."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from services.api.readmodel import ReadModel

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


def csv_row(event: dict[str, Any]) -> list[Any]:
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


class CsvExporter:
    """One CSV file per replica; the ids already written are read back from the file itself,
    so a restart (or another process appending under the same lock) never duplicates a row."""

    def __init__(self, directory: Path, name: str = "external_events.csv") -> None:
        self.path = directory / name
        self._lock = asyncio.Lock()

    def _existing(self) -> set[str]:
        if not self.path.exists():
            return set()
        with self.path.open(newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle)
            next(rows, None)
            return {row[0] for row in rows if row}

    async def append(self, model: ReadModel, slots: Iterable[int]) -> tuple[int, int]:
        """Append the given per-source records not yet exported; (appended, total rows)."""
        async with self._lock:
            bodies = [model.external_body(s) for s in slots]
            return await asyncio.to_thread(self._write, bodies)

    def _write(self, bodies: list[bytes]) -> tuple[int, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", newline="", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # other processes exporting to the same file
            try:
                existing = self._existing()
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                if not existing and handle.tell() == 0:
                    writer.writerow(COLUMNS)
                appended = 0
                for body in bodies:
                    event = orjson.loads(body)
                    if event.get("id") in existing:
                        continue
                    existing.add(event["id"])
                    writer.writerow(csv_row(event))
                    appended += 1
                handle.write(buffer.getvalue())
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return appended, len(existing)
