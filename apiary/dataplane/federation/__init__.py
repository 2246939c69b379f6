"""The data plane's side of federation (docs/architecture.md, "Federation"): its identity
(:mod:`~apiary.dataplane.federation.identity`), the controller that keeps the stream to the
control plane (:mod:`~apiary.dataplane.federation.controller`, which needs the generated
gRPC code, so it is not imported here) and the appliers of pushed configuration
(:mod:`~apiary.dataplane.federation.apply`)."""

from apiary.dataplane.federation.identity import (
    DataPlaneIdentity,
    ensure_identity,
    load_identity,
    public_jwk,
    thumbprint,
    write_identity,
)

__all__ = ["DataPlaneIdentity", "ensure_identity", "load_identity", "public_jwk", "thumbprint",
           "write_identity"]
