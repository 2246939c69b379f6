"""Configuration the control plane owns, served to SDKs by the data plane: prompt templates
(HoneyHive ``/v1/configurations``) and metric definitions (``/v1/metrics``)."""
