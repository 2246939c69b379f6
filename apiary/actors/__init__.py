"""Ray actors: the stateful parts of the data plane, as thin wrappers over the services
that hold the logic (writers over :mod:`apiary.dataplane.writer`, evaluators over
:mod:`apiary.dataplane.evaluation`, the ClickHouse owner over :mod:`apiary.store`, pool
scalers over :mod:`apiary.dataplane.scaling`)."""
