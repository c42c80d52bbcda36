"""The thin query API (FastAPI)."""
