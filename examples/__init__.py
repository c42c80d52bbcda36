"""Runnable examples for subscribers of Marquee's topics (see docs/TOPICS.md)."""
