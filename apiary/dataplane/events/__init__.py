"""Events and sessions over the HoneyHive REST API: creating and updating them (published to
JetStream, never written to ClickHouse here), reading, exporting and searching them.

- :mod:`.publish`: REST requests → events and patches on JetStream, acknowledged before
  the request is answered (also how review publishes a score).
- :mod:`.routes_events`: creating, updating, reading and searching events.
- :mod:`.routes_sessions`: starting sessions and adding events to them.
- :mod:`.routes_query`: the export API, a session's event tree, the session list.
- :mod:`.routes_schema`: ``GET /v1/events/schema``, which fields a project's events carry.
- :mod:`.schemas`, :mod:`.schemas_read`: request and response bodies (the OpenAPI spec);
  charts, review and the LLM proxy reuse them.

Its modules are imported by name; this package imports none of them (the app mounts
each router). Below it: :mod:`apiary.dataplane.replica`, ``auth``,
``db`` and the foundations (docs/architecture.md).
"""

__all__ = [
    "publish",
    "routes_events",
    "routes_query",
    "routes_schema",
    "routes_sessions",
    "schemas",
    "schemas_read",
]
