"""Pools that follow their queue (DESIGN.md, "[scalers]").

- :mod:`~apiary.dataplane.scaling.policy`: how many actors a pool should have, from its JetStream
  consumer's backlog (pending + ack-pending), within bounds, with up and down delays.
- :mod:`~apiary.dataplane.scaling.pool`: a resizable pool of named Ray actors that grows in the
  background (an actor may wait for the autoscaler to add a node) and shrinks by draining.

The actor that ties them to a consumer is :class:`apiary.actors.scaler.PoolScaler`.
"""
