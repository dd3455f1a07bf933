"""Ports for the processes tests and benchmarks start themselves."""

import random
import socket

_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range, never one this run already handed out.

    The port is bound later by the process it is for; an ephemeral port could meanwhile become
    the local end of some outgoing connection (to PostgreSQL, Redis) and that bind would fail."""
    while True:
        port = random.randrange(20000, 32000)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
