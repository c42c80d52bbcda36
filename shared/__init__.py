"""Code that two or more Marquee services use: contracts, settings and client helpers."""
