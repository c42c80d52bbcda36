"""Marquee's services, each its own process: ingestor, normalizer, importer, api."""
