"""Bringing Apiary up: the one start-up sequence that ``apiary up`` and the cluster's Serve
applications share, and the bootstrap tenant of an embedded installation."""
