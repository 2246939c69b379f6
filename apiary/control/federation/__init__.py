"""Federation, the control plane's side: data planes that register their own ECDSA keys
(:mod:`._registry`), the config log they follow (:mod:`._log`), the alert activity they
report and the previews they answer (:mod:`._activity`), and the gRPC stream they dial
(:mod:`.server`, imported on its own: it needs the generated code and grpc).

docs/architecture.md, "Federation", says what is durable when and how entries are sent.
"""

from apiary.control.federation._activity import (
    ALERT_PREVIEW,
    PREVIEW_TIMEOUT_S,
    ReportedActivity,
    abandon_preview,
    queue_preview,
    record_activity,
    take_preview,
)
from apiary.control.federation._log import (
    KINDS,
    entries_for,
    install_config_log,
    latest_version,
    notification_channel_change,
    notification_test_change,
    wire_payload,
)
from apiary.control.federation._registry import (
    BOOTSTRAP_PREFIX,
    DEFAULT_BOOTSTRAP_TTL_S,
    MAX_BOOTSTRAP_TTL_S,
    MAX_IDENTITY_LIFETIME_S,
    check_token_audience,
    create_data_plane,
    forget_previous_key,
    get_data_plane,
    jwk_thumbprint,
    parse_public_jwk,
    prepare_local_data_plane,
    queue_command,
    register_data_plane_key,
    revoke_data_plane,
    rotate_data_plane_key,
    verify_identity,
    visible_data_planes,
)

__all__ = [
    "ALERT_PREVIEW",
    "BOOTSTRAP_PREFIX",
    "DEFAULT_BOOTSTRAP_TTL_S",
    "KINDS",
    "MAX_BOOTSTRAP_TTL_S",
    "MAX_IDENTITY_LIFETIME_S",
    "PREVIEW_TIMEOUT_S",
    "ReportedActivity",
    "abandon_preview",
    "check_token_audience",
    "create_data_plane",
    "entries_for",
    "forget_previous_key",
    "get_data_plane",
    "install_config_log",
    "jwk_thumbprint",
    "latest_version",
    "notification_channel_change",
    "notification_test_change",
    "parse_public_jwk",
    "prepare_local_data_plane",
    "queue_command",
    "queue_preview",
    "record_activity",
    "register_data_plane_key",
    "revoke_data_plane",
    "rotate_data_plane_key",
    "take_preview",
    "verify_identity",
    "visible_data_planes",
    "wire_payload",
]
