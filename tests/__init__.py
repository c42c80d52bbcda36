"""Marquee's test suite: unit tests (fakes only) and integration tests (the real stack)."""
