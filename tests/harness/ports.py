"""Free loopback ports that are free for UDP and TCP at once (DNS servers bind both)."""

from __future__ import annotations

import errno
import socket

_ATTEMPTS = 50


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port number that is currently free on `host` for both UDP and TCP.

    The port is released before returning, so another process can still take it; the
    start helpers therefore retry with a new port when a server fails to bind.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(_ATTEMPTS):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            if _tcp_free(family, host, port):
                return port
    raise RuntimeError(f"no port free for both UDP and TCP on {host}")


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port currently free on `host` (for HTTP listeners)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as tcp:
        tcp.bind((host, 0))
        return tcp.getsockname()[1]


def _tcp_free(family: int, host: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as tcp:
        try:
            tcp.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def format_address(host: str, port: int) -> str:
    """HOST:PORT as the consuldns CLI writes it (IPv6 in brackets)."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def split_address(address: str, default_port: int = 53) -> tuple[str, int]:
    """Inverse of format_address; a bare host gets `default_port`."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, default_port
