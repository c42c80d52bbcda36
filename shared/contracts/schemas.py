"""Write or check the JSON Schemas of every contract: ``python -m shared.contracts.schemas``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from shared.contracts.base import Contract
from shared.contracts.topics import ALL_CONTRACTS

__all__ = ["ALL_CONTRACTS", "DEFAULT_DIR", "main", "problems", "schema_of", "write"]

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def schema_of(model: type[Contract]) -> dict[str, Any]:
    """The JSON Schema of a contract, as subscribers receive it (serialised form)."""
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    schema["$id"] = f"{model.type_name()}.json"
    schema["x-schema-version"] = model.schema_version
    return schema


def file_name(model: type[Contract]) -> str:
    return f"{model.schema_name}.v{model.schema_version}.json"


def render(model: type[Contract]) -> bytes:
    return orjson.dumps(schema_of(model), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


_PROSE = frozenset({"description", "title", "examples"})


def structure(schema: Any) -> Any:
    """The schema without its prose, so that a reworded docstring is not a new version."""
    if isinstance(schema, dict):
        return {k: structure(v) for k, v in schema.items() if k not in _PROSE}
    if isinstance(schema, list):
        return [structure(v) for v in schema]
    return schema


def problems(directory: Path) -> list[str]:
    """Why the stored schemas do not match the code; empty when they do."""
    found: list[str] = []
    for model in ALL_CONTRACTS:
        path = directory / file_name(model)
        if not path.exists():
            found.append(f"{path.name}: missing (new contract or version: run the writer)")
            continue
        stored = path.read_bytes()
        if stored == render(model):
            continue
        if structure(orjson.loads(stored)) != structure(schema_of(model)):
            found.append(
                f"{path.name}: {model.__name__} changed without a version bump "
                f"(raise {model.__name__}.schema_version, add an upcaster if it breaks readers)"
            )
        else:
            found.append(f"{path.name}: descriptions changed: run the writer")
    return found


def write(directory: Path) -> list[Path]:
    """Write the schema of every contract's current version; older versions are kept."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in ALL_CONTRACTS:
        path = directory / file_name(model)
        path.write_bytes(render(model))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the schemas live")
    parser.add_argument("--check", action="store_true", help="only report differences")
    args = parser.parse_args(argv)
    if args.check:
        found = problems(args.dir)
        for line in found:
            print(line, file=sys.stderr)
        return 1 if found else 0
    stale = problems(args.dir)
    for path in write(args.dir):
        print(path)
    unbumped = [p for p in stale if "without a version bump" in p]
    if unbumped:
        print("note: overwrote schemas whose version was not bumped:", file=sys.stderr)
        for line in unbumped:
            print("  " + line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
