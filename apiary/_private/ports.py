"""Spare TCP ports: for a server that binds later, so the port must stay free meanwhile.

``bind(0)`` hands out a port from the kernel's ephemeral range, the same range every
outgoing connection takes its local port from: a port chosen that way and bound seconds
later (after Ray, Serve and their connections started) can be taken in between, and the
server then fails to bind. :func:`spare_port` chooses below that range instead (and below
Ray Serve's 30000-31000, above Ray's worker ports 10002-19999), where nothing is handed out
implicitly, and never hands out the same port twice in one process.
"""

from __future__ import annotations

import random
import socket

#: Where spare ports are chosen: below the ephemeral range (32768-60999 by default) and
#: Serve's ports, above Ray's worker ports.
SPARE_RANGE = (20000, 29999)

_handed_out: set[int] = set()


def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be bound now (a listener, or a connection's port)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def spare_port(host: str = "0.0.0.0") -> int:
    """A port free on ``host`` now, in :data:`SPARE_RANGE`, not handed out before by this
    process. Raises :class:`RuntimeError` when 500 tries found none."""
    for _ in range(500):
        port = random.randint(*SPARE_RANGE)
        if port not in _handed_out and not port_in_use(host, port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {SPARE_RANGE[0]}-{SPARE_RANGE[1]}")


__all__ = ["SPARE_RANGE", "port_in_use", "spare_port"]
