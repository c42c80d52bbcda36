"""Unit tests of the provider sandbox (deploy/sandbox)."""
