"""The client-facing sockets of one process: bind, start, stop (draining) and close them.

Binding happens before privileges are dropped; starting after. UDP and TCP of every address
share one handler, one access policy and one set of TCP limits; a reload swaps the last two
(`configure`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Any

from consuldns import address, packetio
from consuldns.address import Address
from consuldns.serve import steering
from consuldns.serve.handler import Handler
from consuldns.serve.stats import Stats
from consuldns.serve.tcp import Limits, TcpConnections
from consuldns.serve.udp import UdpListener

log = logging.getLogger("consuldns.listener")

LISTEN_BACKLOG = 256


@dataclass
class Bound:
    """The UDP and TCP sockets of one listen address, bound but not yet served."""

    host: str
    port: int
    udp: socket.socket
    tcp: socket.socket

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


class BindError(OSError):
    """A listen address that could not be bound: which one, over which protocol, and why."""

    def __init__(self, host: str, port: int, protocol: str, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.host, self.port, self.protocol = host, port, protocol


def make_socket(host: str, port: int, kind: int, reuse_port: bool) -> socket.socket:
    """A bound non-blocking socket; BindError names the address and protocol that failed."""
    sock = None
    try:
        sock = socket.socket(address.family_of(host), kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise BindError(host, port, "tcp" if kind == socket.SOCK_STREAM else "udp", exc) \
            from exc
    return sock


def bind(addresses: list[Address], workers: int = 1) -> list[Bound]:
    """UDP and TCP sockets for every address; on a failure none stays open (BindError).
    With several workers the sockets join each address's SO_REUSEPORT group, and UDP
    queries are steered to the workers by name (serve/steering.py)."""
    reuse_port = workers > 1
    bound: list[Bound] = []
    try:
        for host, port in addresses:
            udp = make_socket(host, port, socket.SOCK_DGRAM, reuse_port)
            if reuse_port:
                steering.attach(udp, workers)
            try:
                tcp = make_socket(host, port, socket.SOCK_STREAM, reuse_port)
            except OSError:
                udp.close()
                raise
            bound.append(Bound(host, port, udp, tcp))
    except OSError:
        for sockets in bound:
            sockets.close()
        raise
    return bound


class Listeners:
    """Every served address of one process."""

    def __init__(self, handler: Handler, access: Any, limits: Limits, stats: Stats):
        self.handler = handler
        self.stats = stats
        self.tcp = TcpConnections(handler, access, limits, stats)
        self._udp: list[UdpListener] = []
        self._servers: list[tuple[Address, asyncio.Server]] = []

    @property
    def access(self) -> Any:
        return self.tcp.access

    def configure(self, access: Any, limits: Limits) -> None:
        """Apply a new access policy and TCP limits (start-up and reload)."""
        self.tcp.access, self.tcp.limits = access, limits
        for listener in self._udp:
            listener.access = access

    async def start(self, bound: list[Bound]) -> None:
        if bound:
            log.info("UDP through %s", packetio.ACTIVE.description)
        for sockets in bound:
            listener = UdpListener(sockets.udp, self.handler, self.tcp.access, self.stats)
            listener.start()
            self._udp.append(listener)
            server = await asyncio.start_server(self.tcp.serve, sock=sockets.tcp)
            self._servers.append(((sockets.host, sockets.port), server))
            log.info("listening on %s (udp, tcp)", address.show(sockets.host, sockets.port))

    async def stop(self, drain_timeout: float = 2.0) -> None:
        """Stop accepting, let queries waiting for upstream finish (bounded), close all."""
        for listener in self._udp:
            listener.stop()
        for _, server in self._servers:
            server.close()
        await self.handler.exchanges.drain(drain_timeout)
        self.tcp.close_all()
        for listener in self._udp:
            listener.close()

    def close(self, host: str, port: int) -> None:
        """Stop serving one address (config reload); host as getsockname() writes it."""
        for listener in [u for u in self._udp if u.sock.getsockname()[:2] == (host, port)]:
            listener.stop()
            listener.close()
            self._udp.remove(listener)
        for entry in [e for e in self._servers
                      if any(s.getsockname()[:2] == (host, port) for s in e[1].sockets)]:
            entry[1].close()
            self._servers.remove(entry)
