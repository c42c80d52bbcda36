"""Ingestor unit tests."""
