"""Provider sandbox: fake Ticketmaster, SeatGeek, Eventbrite, Meetup and Spotify on one port."""

from __future__ import annotations

from deploy.sandbox.app import create_app
from deploy.sandbox.control import Limits, State
from deploy.sandbox.world import World

__all__ = ["Limits", "State", "World", "create_app"]
