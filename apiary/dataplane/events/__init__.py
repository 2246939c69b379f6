"""Events and sessions over the HoneyHive REST API: creating and updating them (published to
JetStream, never written to ClickHouse here), reading, exporting and searching them."""
