"""Mint a development token: ``python -m services.api token --sub alice --role organizer``.

Signs with ``API_JWT_SECRET`` (HS256), or with ``--private-key`` (RS256, PEM) and ``--kid``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from services.api.auth import ROLE_NAMES, mint
from shared.settings import ApiSettings, load


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.api token", description=__doc__)
    parser.add_argument("--sub", required=True, help="the user id the token speaks for")
    parser.add_argument("--role", choices=sorted(ROLE_NAMES), default="user")
    parser.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires")
    parser.add_argument("--private-key", type=Path, help="PEM RSA key: sign RS256 instead")
    parser.add_argument("--kid", help="key id for RS256 (as in the JWKS)")
    args = parser.parse_args(argv)
    settings = load(ApiSettings)
    if settings.environment not in ("dev", "test") and args.private_key is None:
        print("refusing to mint shared-secret tokens outside dev/test", file=sys.stderr)
        return 2
    if args.private_key is not None:
        key = load_pem_private_key(args.private_key.read_bytes(), password=None)
        token = mint(
            args.sub,
            args.role,
            private_key=key,
            algorithm="RS256",
            ttl_s=args.ttl,
            kid=args.kid,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    else:
        token = mint(
            args.sub,
            args.role,
            secret=settings.jwt_secret.get_secret_value(),
            ttl_s=args.ttl,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    print(token)
    return 0
