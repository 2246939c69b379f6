"""Spare ports (apiary._private.ports), for servers bound seconds after the port is chosen."""

from __future__ import annotations

import socket
from pathlib import Path

from apiary._private.ports import SPARE_RANGE, port_in_use, spare_port


def test_a_spare_port_is_never_one_a_connection_can_take_meanwhile() -> None:
    """CI: a test chose the OTLP/gRPC port with bind(0), Ray and Serve started, and by the
    time the data-plane replicas bound it some connection held it as its local port
    ("Failed to bind to address 127.0.0.1:45989"). Spare ports come from below the
    kernel's ephemeral range, where no connection takes its port."""
    low, _ = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [spare_port() for _ in range(50)]
    assert all(SPARE_RANGE[0] <= p <= SPARE_RANGE[1] < low for p in ports), ports
    assert len(set(ports)) == 50  # never handed out twice by one process
    # Connections' local ports (bind(0)) do not come from there.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        clients = [socket.create_connection(listener.getsockname()) for _ in range(20)]
        try:
            assert all(c.getsockname()[1] >= low for c in clients)
        finally:
            for c in clients:
                c.close()


def test_a_port_in_use_is_not_spare() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", spare_port()))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_in_use("0.0.0.0", port)
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("0.0.0.0", port)
