"""UDP and TCP listeners on one address, one Handler, one asyncio loop."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct

from .handler import CLOSE, Action, Deferred, Handler
from .recursor import forward

TCP_IDLE_TIMEOUT = 8.0  # miekg's default idle timeout for TCP connections
UDP_RCVBUF = 4 * 1024 * 1024
BIND_ATTEMPTS = 50


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port; port 0 picks a free one for both."""
    family = _family(host)
    for _ in range(BIND_ATTEMPTS):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
        except OSError as exc:
            udp.close()
            tcp.close()
            if port or exc.errno != errno.EADDRINUSE:
                raise
            continue
        tcp.listen(256)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        except OSError:
            pass
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no free UDP+TCP port pair on {host}")


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.handle = server.handler.handle
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        action = self.handle(data, "udp")
        if action is None or action is CLOSE:
            return
        if type(action) is bytes:
            self.transport.sendto(action, addr)
            return
        self.server.spawn(self._later(action, addr))

    async def _later(self, action: Deferred, addr) -> None:
        reply = await self.server.resolve(action, "udp")
        if reply is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from earlier sends; nothing to do


class DnsServer:
    """Serves the Handler on UDP and TCP at host:port until stop()."""

    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = bind_pair(self.host, self.port)
        self.port = udp_sock.getsockname()[1]
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=udp_sock)
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tcp is not None:
            await self._tcp.wait_closed()

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resolve(self, action: Deferred, transport: str) -> bytes | None:
        """Wait out the delay, then the reply: given, or from the recursors."""
        if action.delay > 0:
            await asyncio.sleep(action.delay)
        if action.forward is None:
            return action.data
        data, query, snap = action.forward
        cfg = snap.config
        return await forward(data, query, transport, cfg.recursors, cfg.recursor_timeout,
                             snap.modern)

    async def _reply_for(self, action: Action) -> bytes | None:
        if action is None or type(action) is bytes:
            return action
        return await self.resolve(action, "tcp")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Queries on one connection are answered in order, one at a time, as miekg does.
        try:
            while True:
                prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                data = await reader.readexactly(struct.unpack("!H", prefix)[0])
                action = self.handler.handle(data, "tcp")
                if action is CLOSE:
                    return
                reply = await self._reply_for(action)
                if reply is not None and len(reply) > 0xFFFF:
                    return  # cannot be framed; the agent's write would fail as well
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
