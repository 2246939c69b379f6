"""Internals of Apiary. Nothing here is public API."""
