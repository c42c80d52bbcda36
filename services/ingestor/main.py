"""Composition root of the ingestor service: settings in, scheduler and job consumer out."""

from __future__ import annotations

from services.ingestor.service import run

__all__ = ["run"]
