"""The sandbox's fixed, public credentials and the client settings that point at it."""

from __future__ import annotations

# Not secrets: clients configure them exactly like real provider credentials.
TM_KEY = "sandbox-tm-key"
SG_ID, SG_SECRET = "sandbox-sg-id", "sandbox-sg-secret"
EB_TOKEN = "sandbox-eb-token"  # noqa: S105 - public sandbox value
MU_TOKEN = "sandbox-meetup-token"  # noqa: S105 - public sandbox value
SP_ID, SP_SECRET = "sandbox-spotify-id", "sandbox-spotify-secret"


def client_env(base: str) -> dict[str, str]:
    """The ingestor's provider variables for a sandbox at ``base`` (real APIs: same names)."""
    return {
        "TICKETMASTER_BASE_URL": f"{base}/ticketmaster/discovery/v2/",
        "TICKETMASTER_API_KEY": TM_KEY,
        "SEATGEEK_BASE_URL": f"{base}/seatgeek/2/",
        "SEATGEEK_CLIENT_ID": SG_ID,
        "SEATGEEK_CLIENT_SECRET": SG_SECRET,
        "EVENTBRITE_BASE_URL": f"{base}/eventbrite/v3/",
        "EVENTBRITE_TOKEN": EB_TOKEN,
        "MEETUP_BASE_URL": f"{base}/meetup/",
        "MEETUP_TOKEN": MU_TOKEN,
        "SPOTIFY_BASE_URL": f"{base}/spotify/v1/",
        "SPOTIFY_TOKEN_URL": f"{base}/spotify/accounts/api/token",
        "SPOTIFY_CLIENT_ID": SP_ID,
        "SPOTIFY_CLIENT_SECRET": SP_SECRET,
    }
