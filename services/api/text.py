"""Normalised search tokens: lower case, accents folded, split on anything not a letter or digit."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_WORD = re.compile(r"[^\W_]+")
LOCATION = "@"  # location tokens share the postings with a prefix, so one table serves both


def fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def tokens(text: str | None) -> list[str]:
    if not text:
        return []
    return _WORD.findall(fold(text))


def token_set(parts: Iterable[str | None], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for part in parts:
        found.update(prefix + t for t in tokens(part))
    return found
