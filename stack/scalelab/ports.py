"""Free ports on 127.0.0.1.

A server's port is picked *below* the kernel's ephemeral range (the ports ``connect()`` takes
for its own end). Picked inside it, a restarted server could find its port taken: a client
that keeps reconnecting to a dead server's port can be given that very port as its own end
and connect to itself (TCP's simultaneous open), holding it. The server then restarts on
another port and its clients knock on the old one forever (seen: the order service after a
SIGKILLed RabbitMQ, once in a few drills).
"""

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
LOWEST = 20000                  # above the well-known and registered ports most systems use
EPHEMERAL_DEFAULT = 32768       # Linux's default start; macOS starts at 49152


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_DEFAULT


def free_port() -> int:
    """A port nothing listens on, outside the ephemeral range when there is room below it."""
    top = _ephemeral_start()
    if top - LOWEST >= 1000:
        for port in random.sample(range(LOWEST, top), 50):
            if not port_busy(port, reuse=False):
                return port
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_busy(port: int, reuse: bool = True) -> bool:
    with socket.socket() as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
        return False
