"""The control plane's HTTP API: :func:`create_control_plane_app`."""

from apiary.control.api.app import create_control_plane_app

__all__ = ["create_control_plane_app"]
