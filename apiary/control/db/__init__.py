"""cpdb: the control plane's database (SQLAlchemy 2 models, Alembic migrations).

PostgreSQL (``postgresql+psycopg://``) in production, a SQLite file as the embedded
default; the same models and migrations serve both. Open with :class:`Database`, migrate
with :func:`upgrade` before first use.
"""

from apiary.control.db._base import Base, UTCDateTime
from apiary.control.db.engine import Database, open_engine
from apiary.control.db.migrate import current_revision, downgrade, head_revision, upgrade
from apiary.control.db.models_config import (
    AlertDefinition,
    EvaluatorConfig,
    EvaluatorVersion,
    PromptEnvironment,
    PromptTemplate,
    PromptVersion,
)
from apiary.control.db.models_federation import ConfigChange, DataPlaneCommand, DataPlaneHealth
from apiary.control.db.models_identity import (
    EmailVerification,
    OidcProvider,
    OrgDomain,
    RecoveryCode,
    SsoLoginState,
    SsoMfaTicket,
    TotpCredential,
    User,
    UserIdentity,
    UserSession,
)
from apiary.control.db.models_notifications import AlertEvent, NotificationChannel, OutgoingMail
from apiary.control.db.models_tenancy import (
    ApiKey,
    DataPlane,
    Invitation,
    Membership,
    Organization,
    Project,
    Role,
    SigningKey,
    Workspace,
)

__all__ = [
    "AlertDefinition",
    "AlertEvent",
    "ApiKey",
    "Base",
    "ConfigChange",
    "DataPlane",
    "DataPlaneCommand",
    "DataPlaneHealth",
    "Database",
    "EmailVerification",
    "EvaluatorConfig",
    "EvaluatorVersion",
    "Invitation",
    "Membership",
    "NotificationChannel",
    "OidcProvider",
    "OrgDomain",
    "Organization",
    "OutgoingMail",
    "Project",
    "PromptEnvironment",
    "PromptTemplate",
    "PromptVersion",
    "RecoveryCode",
    "Role",
    "SigningKey",
    "SsoLoginState",
    "SsoMfaTicket",
    "TotpCredential",
    "UTCDateTime",
    "User",
    "UserIdentity",
    "UserSession",
    "Workspace",
    "current_revision",
    "downgrade",
    "head_revision",
    "open_engine",
    "upgrade",
]
