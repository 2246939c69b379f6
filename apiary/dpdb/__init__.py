"""dpdb: the data plane's own metadata database (SQLAlchemy 2 models, Alembic migrations).

Datasets, datapoints, dataset versions and experiment runs (:mod:`.models`); the LLM
proxy's encrypted provider credentials (:mod:`.models_proxy`); annotation queues and their
items (:mod:`.models_review`); saved charts (:mod:`.models_charts`, operations
:mod:`.charts`). PostgreSQL (``postgresql+psycopg://``, a database of its
own, never the control plane's) in production, the SQLite file ``<data-dir>/dp.sqlite`` as
the embedded default (``settings.dp_database``); the same models and migrations serve
both. Open with :class:`DataPlaneDatabase` (which migrates by default); the operations are
:mod:`.datasets`, :mod:`.files` (import/export) and :mod:`.runs` (those of the proxy and of
review live with them: :mod:`apiary.proxy.credentials`, :mod:`apiary.review`).
"""

from apiary.dpdb._base import Base, UTCDateTime
from apiary.dpdb.datasets import DatapointSpec, Owner
from apiary.dpdb.engine import DataPlaneDatabase, LazyDatabase, open_engine
from apiary.dpdb.migrate import (
    VERSION_TABLE,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from apiary.dpdb.models import (
    RUN_STATUSES,
    Datapoint,
    Dataset,
    DatasetDatapoint,
    DatasetVersion,
    DatasetVersionItem,
    ExperimentRun,
)
from apiary.dpdb.models_charts import Chart
from apiary.dpdb.models_proxy import ProviderCredential
from apiary.dpdb.models_review import AnnotationItem, AnnotationQueue

__all__ = [
    "RUN_STATUSES",
    "VERSION_TABLE",
    "AnnotationItem",
    "AnnotationQueue",
    "Base",
    "Chart",
    "DataPlaneDatabase",
    "Datapoint",
    "DatapointSpec",
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
]
