"""OpenAPI descriptions of the /readyz answers (the handler builds the JSON itself)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Readiness(BaseModel):
    """The body of /readyz, ready (200) or not (503)."""

    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(
        description="each dependency (kafka, mongo): `ok`, or the error that stopped its check"
    )


READYZ_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Readiness, "description": "every dependency answers"},
    503: {"model": Readiness, "description": "a dependency is down"},
}
