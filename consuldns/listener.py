"""LISTEN/REPLY: client-facing UDP and TCP sockets. Bytes in, bytes out.

UDP uses a non-blocking socket drained in batches (packetio: recvmmsg/sendmmsg when the
accelerator is built, else recvfrom/sendto) from a reader callback: asyncio's
DatagramProtocol allocates a large buffer per datagram and costs several times more per
packet. Cache hits are answered inside the callback and leave together in one send_batch;
misses become tasks, capped in number.
TCP follows RFC 7766: several queries per connection, answered as they complete, idle
connections closed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket

from consuldns import packetio, wire
from consuldns.acl import AccessList
from consuldns.handler import Handler
from consuldns.stats import Stats

log = logging.getLogger("consuldns.listener")

DATAGRAMS_PER_WAKEUP = packetio.MAX_BATCH  # bound one callback's work: TCP and timers run too
PIPELINED_PER_CONNECTION = 32
TCP_WRITE_BUFFER_LIMIT = 256 * 1024


class Limits:
    """Caps that keep a flood from costing more than the packets themselves."""

    def __init__(self, max_inflight: int = 1000, max_tcp_connections: int = 200,
                 tcp_idle_timeout: float = 10.0, tcp_read_timeout: float = 5.0):
        self.max_inflight = max_inflight
        self.max_tcp_connections = max_tcp_connections
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_read_timeout = tcp_read_timeout


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT or [V6]:PORT into (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [ADDRESS]:PORT")
        port = int(rest[1:])
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"{text!r}: expected HOST:PORT (IPv6 as [::1]:53)")
        port = int(port_text)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socket.inet_pton(family, host)
    if not 0 <= port < 65536:
        raise ValueError(f"{text!r}: port out of range")
    return host, port


def make_socket(host: str, port: int, kind: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


class Listeners:
    """All the sockets of one process for one handler; they share the in-flight budget."""

    def __init__(self, handler: Handler, acl: AccessList, limits: Limits, stats: Stats):
        self.handler = handler
        self.acl = acl
        self.limits = limits
        self.stats = stats
        self.inflight = 0
        self.tcp_connections = 0
        self.packet_io = packetio.ACTIVE
        self.tasks: set[asyncio.Task] = set()
        self._udp: list[socket.socket] = []
        self._tcp: list[asyncio.Server] = []
        self._tcp_writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------ lifecycle

    def bind(self, addresses: list[tuple[str, int]], reuse_port: bool = False) -> list:
        """Bind UDP and TCP sockets for every address (before dropping privileges)."""
        bound = []
        for host, port in addresses:
            udp = make_socket(host, port, socket.SOCK_DGRAM, reuse_port)
            tcp = make_socket(host, port, socket.SOCK_STREAM, reuse_port)
            tcp.listen(256)
            bound.append((host, port, udp, tcp))
        return bound

    async def start(self, bound: list) -> None:
        loop = asyncio.get_running_loop()
        log.info("UDP through %s", self.packet_io.description)
        for host, port, udp, tcp in bound:
            loop.add_reader(udp.fileno(), self._on_udp_readable, udp)
            self._udp.append(udp)
            self._tcp.append(await asyncio.start_server(self._serve_tcp, sock=tcp))
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            log.info("listening on %s (udp, tcp)", shown)

    async def stop(self, drain_timeout: float = 2.0) -> None:
        """Stop accepting, let in-flight queries finish (bounded), then close everything."""
        loop = asyncio.get_running_loop()
        for sock in self._udp:
            loop.remove_reader(sock.fileno())
        for server in self._tcp:
            server.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=drain_timeout)
        for writer in list(self._tcp_writers):
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        for sock in self._udp:
            sock.close()

    def close(self, host: str, port: int) -> None:
        """Stop serving one address (config reload); host as getsockname() writes it."""
        loop = asyncio.get_running_loop()
        for sock in [s for s in self._udp if s.getsockname()[:2] == (host, port)]:
            loop.remove_reader(sock.fileno())
            self._udp.remove(sock)
            sock.close()
        for server in [s for s in self._tcp
                       if any(k.getsockname()[:2] == (host, port) for k in s.sockets)]:
            server.close()
            self._tcp.remove(server)

    # ------------------------------------------------------------ UDP

    def _on_udp_readable(self, sock: socket.socket) -> None:
        # One recv_batch, then every reply given at once (hits, refusals, errors) in one
        # send_batch; misses go on as tasks. Names are bound once per wakeup: the loop runs
        # for every datagram, and a cache hit costs only a few microseconds of Python.
        packet_io = self.packet_io
        try:
            batch = packet_io.recv_batch(sock, DATAGRAMS_PER_WAKEUP)
        except OSError:
            return  # e.g. an ICMP error queued on the socket; the next wakeup reads on
        self.stats.queries["udp"] += len(batch)
        handler = self.handler
        answer_now = handler.answer_now
        allows = self.acl.allows
        rcodes = self.stats.rcodes
        replies: list = []
        try:
            for data, client in batch:
                if not allows(client[0]):
                    reply = self._refusal(data, client)
                elif (reply := answer_now(data, False)).__class__ is bytes:
                    if handler.query_log is not None:
                        handler.query_log.answered(handler, client, data, reply, False)
                else:
                    self._resolve_later(sock, data, reply, client)
                    continue
                if reply:
                    rcodes[reply[3] & 0x0F] += 1
                    replies.append((reply, client))
        finally:
            failures = packet_io.send_batch(sock, replies) if replies else None
            if failures:
                self._count_failures(replies, failures)

    def _refusal(self, data: bytes, client) -> bytes:
        reply = self.handler.refused(data)
        if self.handler.query_log is not None:
            self.handler.query_log.answered(self.handler, client, data, reply, False,
                                            refused=True)
        return reply

    def _resolve_later(self, sock: socket.socket, data: bytes, query: wire.Query,
                       client) -> None:
        """A query that needs upstream: follow an exchange under way, or start one."""
        handler = self.handler
        if self.inflight >= self.limits.max_inflight:
            self.stats.overload += 1
            self._send(sock, self._servfail(data, query), client)
        elif handler.follow(data, query, False, self._udp_delivery(sock, client), client):
            self.inflight += 1  # a follower waits on another query's exchange, no task
        else:
            # Take the slot now: the tasks spawned by this loop have not run yet, so a
            # burst in one wakeup would otherwise all pass the check above.
            self.inflight += 1
            claimed = handler.claim(query)
            task = self._spawn(self._resolve_udp(sock, data, query, client, claimed))
            if claimed is not None:
                task.add_done_callback(lambda _, q=query, c=claimed: handler.release(q, c))

    def _udp_delivery(self, sock: socket.socket, client):
        def deliver(reply: bytes) -> None:
            self.inflight -= 1
            self._send(sock, reply, client)

        return deliver

    def _send(self, sock: socket.socket, reply: bytes, client) -> None:
        if not reply:
            return
        self.stats.rcodes[reply[3] & 0x0F] += 1
        replies = [(reply, client)]
        self._count_failures(replies, self.packet_io.send_batch(sock, replies))

    def _count_failures(self, replies: list, failures: list) -> None:
        """send_batch's (index, errno) list of the replies it could not send."""
        for index, error in failures:
            if error == errno.EAGAIN:
                self.stats.dropped += 1  # the send buffer is full: the client will retry
            else:
                log.debug("send to %s failed: %s", replies[index][1], os.strerror(error))

    async def _resolve_udp(self, sock: socket.socket, data: bytes, query: wire.Query,
                           client, claimed=None) -> None:
        self._send(sock, await self._resolve(data, query, False, client, claimed), client)

    async def _resolve(self, data: bytes, query: wire.Query, tcp: bool, client=None,
                       claimed=None) -> bytes:
        # The in-flight slot was taken by the caller, when it spawned this task.
        try:
            return await self.handler.resolve(data, query, tcp, client, claimed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal error answering a query")
            return self._servfail(data, query)
        finally:
            self.inflight -= 1

    def _servfail(self, data: bytes, query: wire.Query) -> bytes:
        return wire.error_reply(data, query, wire.SERVFAIL, max_udp=self.handler.max_udp)

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------ TCP

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self.tcp_connections >= self.limits.max_tcp_connections:
            self.stats.overload += 1
            writer.close()
            return
        self.tcp_connections += 1
        self._tcp_writers.add(writer)
        pending: set[asyncio.Task] = set()
        try:
            await self._read_queries(reader, writer, peer, pending)
            if pending:
                await asyncio.wait(pending, timeout=self.handler.timeout + 1)
        except (ConnectionError, OSError):
            pass
        finally:
            self.tcp_connections -= 1
            self._tcp_writers.discard(writer)
            writer.close()

    async def _read_queries(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            peer, pending: set[asyncio.Task]) -> None:
        allowed = peer is not None and self.acl.allows(peer[0])
        while not writer.is_closing():
            data = await self._read_frame(reader)
            if data is None:
                return
            self.stats.queries["tcp"] += 1
            if not allowed:
                reply = self.handler.refused(data)
                self._write(writer, reply)
                if self.handler.query_log is not None:
                    self.handler.query_log.answered(self.handler, peer, data, reply, True,
                                                    refused=True)
                continue
            result = self.handler.answer_now(data, True)
            if result.__class__ is bytes:
                if self.handler.query_log is not None:
                    self.handler.query_log.answered(self.handler, peer, data, result, True)
                if not result:
                    return  # unreadable: the stream can no longer be trusted
                self._write(writer, result)
                continue
            if len(pending) >= PIPELINED_PER_CONNECTION:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if self.inflight >= self.limits.max_inflight:  # the cap holds over TCP too
                self.stats.overload += 1
                self._write(writer, self._servfail(data, result))
                continue
            self.inflight += 1
            task = self._spawn(self._resolve_tcp(writer, data, result, peer))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """One length-prefixed message, or None at EOF, on a timeout or a zero length."""
        try:
            async with asyncio.timeout(self.limits.tcp_idle_timeout):
                prefix = await reader.readexactly(2)
            length = wire.U16.unpack(prefix)[0]
            if length == 0:
                return None
            async with asyncio.timeout(self.limits.tcp_read_timeout):
                return await reader.readexactly(length)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None

    async def _resolve_tcp(self, writer: asyncio.StreamWriter, data: bytes,
                           query: wire.Query, peer=None) -> None:
        self._write(writer, await self._resolve(data, query, True, peer))

    def _write(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        if not reply or writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() > TCP_WRITE_BUFFER_LIMIT:
            # A client that does not read its answers is cut off. abort(), not close(): close()
            # would keep the socket and its buffered answers until a client that never reads
            # has read them, i.e. forever.
            writer.transport.abort()
            return
        self.stats.rcodes[reply[3] & 0x0F] += 1
        writer.write(wire.U16.pack(len(reply)) + reply)
