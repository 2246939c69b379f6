"""OTLP/HTTP trace ingestion: decoding (protobuf, JSON, the HoneyHive encoder), span → event
mapping, and the routes that publish to JetStream before they answer."""
