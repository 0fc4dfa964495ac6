"""Free TCP ports on the loopback interface for servers the tests start."""

from __future__ import annotations

import socket
import threading

__all__ = ["free_port"]

#: every port handed out in this test run: a port is free only until its server binds it,
#: and a server started a moment later (a worker still importing) must not be given the same
#: one, which the kernel, picking at random among free ports, can hand out again
_HANDED_OUT: set[int] = set()
_LOCK = threading.Lock()


def free_port() -> int:
    """A loopback port nothing listens on now and no earlier call of this run returned."""
    with _LOCK:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port: int = s.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
