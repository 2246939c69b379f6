"""Benchmarks: commands that print figures (never asserted in tests)."""
