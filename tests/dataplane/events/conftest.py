"""Shared fixtures of the event API tests (events and sessions).

``api`` (from :mod:`_event_api_plane`, one per test module): the data-plane app in-process
with a real :class:`DataPlaneContext` over the session's NATS and chDB, and a real writer loop.
"""

from _event_api_plane import api  # noqa: F401  (the fixture)
