"""Entry point: ``python -m services.api`` serves; ``python -m services.api token`` mints."""

from __future__ import annotations

import sys

if len(sys.argv) > 1 and sys.argv[1] == "token":
    from services.api.tokens import main

    raise SystemExit(main(sys.argv[2:]))

from services.api.main import run

raise SystemExit(run())
