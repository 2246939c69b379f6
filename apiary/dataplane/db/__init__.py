"""The data plane's own metadata database (SQLAlchemy 2 models, Alembic migrations).

Datasets, datapoints, dataset versions and experiment runs (:mod:`.models`); the LLM
proxy's encrypted provider credentials (:mod:`.models_proxy`); annotation queues and their
items (:mod:`.models_review`); saved charts (:mod:`.models_charts`). PostgreSQL
(``postgresql+psycopg://``, a database of its own, never the control plane's) in production, the
SQLite file ``<data-dir>/dp.sqlite`` as the embedded default (``settings.dp_database``); the same
models and migrations serve both. Open with :class:`DataPlaneDatabase` (which migrates by default).
The operations live with their features: :mod:`apiary.dataplane.datasets`,
:mod:`apiary.dataplane.experiments`, :mod:`apiary.dataplane.charts`,
:mod:`apiary.dataplane.evaluation.proxy.credentials`,
:mod:`apiary.dataplane.review`. :class:`Owner` is the tenant and author of a write;
:func:`utcnow` the time its rows are stamped with (aware UTC).
"""

from apiary.dataplane.db._base import Base, Owner, UTCDateTime, utcnow
from apiary.dataplane.db.engine import DataPlaneDatabase, LazyDatabase, open_engine
from apiary.dataplane.db.migrate import (
    VERSION_TABLE,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from apiary.dataplane.db.models import (
    RUN_STATUSES,
    Datapoint,
    Dataset,
    DatasetDatapoint,
    DatasetVersion,
    DatasetVersionItem,
    ExperimentRun,
)
from apiary.dataplane.db.models_charts import Chart
from apiary.dataplane.db.models_proxy import ProviderCredential
from apiary.dataplane.db.models_review import AnnotationItem, AnnotationQueue

__all__ = [
    "RUN_STATUSES",
    "VERSION_TABLE",
    "AnnotationItem",
    "AnnotationQueue",
    "Base",
    "Chart",
    "DataPlaneDatabase",
    "Datapoint",
    "Dataset",
    "DatasetDatapoint",
    "DatasetVersion",
    "DatasetVersionItem",
    "ExperimentRun",
    "LazyDatabase",
    "Owner",
    "ProviderCredential",
    "UTCDateTime",
    "current_revision",
    "downgrade",
    "head_revision",
    "open_engine",
    "upgrade",
    "utcnow",
]
