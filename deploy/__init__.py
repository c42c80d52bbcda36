"""Deployment helpers: the local stack and the provider sandbox."""
