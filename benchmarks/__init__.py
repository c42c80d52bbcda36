"""Benchmark scripts; each prints its figures (see docs/BENCHMARKS.md)."""
