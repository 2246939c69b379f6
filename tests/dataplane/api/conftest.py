"""Shared fixtures of the API tests.

``api`` (from :mod:`_event_api`, one per test module): the data-plane app in-process with a
real :class:`DataPlaneContext` over the session's NATS and chDB, and a real writer loop.
"""

from _event_api import api  # noqa: F401  (the fixture)
