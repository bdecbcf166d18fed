"""LISTEN/REPLY over TCP, per RFC 7766: several queries per connection, answered as they
complete, idle connections closed, a client that does not read its answers cut off."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from consuldns.dns import wire
from consuldns.serve.handler import Handler
from consuldns.serve.stats import Stats

log = logging.getLogger("consuldns.listener")

PIPELINED_PER_CONNECTION = 32
TCP_WRITE_BUFFER_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Limits:
    """Caps on client TCP connections, so a flood costs no more than its packets."""

    max_tcp_connections: int = 200
    tcp_idle_timeout: float = 10.0
    tcp_read_timeout: float = 5.0


class TcpConnections:
    """Serves the TCP connections of every listen address of one process."""

    def __init__(self, handler: Handler, access: Any, limits: Limits, stats: Stats):
        self.handler = handler
        self.access = access
        self.limits = limits
        self.stats = stats
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def count(self) -> int:
        """Open client connections."""
        return len(self._writers)

    def close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection, from accept to close."""
        if self.count >= self.limits.max_tcp_connections:
            self.stats.overload += 1
            writer.close()
            return
        self._writers.add(writer)
        connection = Connection(self, writer)
        try:
            await connection.read_queries(reader)
            await connection.finish(self.handler.options.router.longest_timeout + 1)
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class Connection:
    """The queries of one TCP connection: read in order, answered as they complete."""

    def __init__(self, owner: TcpConnections, writer: asyncio.StreamWriter):
        self.owner = owner
        self.handler = owner.handler
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.pending = 0  # queries waiting for an upstream exchange
        self._room = asyncio.Event()  # set while pending < PIPELINED_PER_CONNECTION
        self._room.set()
        self._drained = asyncio.Event()  # set while pending == 0
        self._drained.set()

    async def read_queries(self, reader: asyncio.StreamReader) -> None:
        allowed = self.peer is not None and self.owner.access.allows(self.peer[0])
        while not self.writer.is_closing():
            data = await self._read_frame(reader)
            if data is None:
                return
            self.owner.stats.queries["tcp"] += 1
            if not allowed:
                self._answered(data, self.handler.refused(data), refused=True)
                continue
            result = self.handler.answer_now(data, True)
            if result.__class__ is bytes:
                self._answered(data, result)
                if not result:
                    return  # unreadable: the stream can no longer be trusted
                continue
            await self._room.wait()
            self._began()
            self.handler.resolve(data, result, True, self.peer, self._deliver)

    def _answered(self, data: bytes, reply: bytes, refused: bool = False) -> None:
        self.write(reply)
        query_log = self.handler.options.query_log
        if query_log is not None:
            query_log.answered(self.handler, self.peer, data, reply, True, refused=refused)

    def _began(self) -> None:
        self.pending += 1
        self._drained.clear()
        if self.pending >= PIPELINED_PER_CONNECTION:
            self._room.clear()

    def _deliver(self, reply: bytes) -> None:
        self.pending -= 1
        if self.pending < PIPELINED_PER_CONNECTION:
            self._room.set()
        if self.pending == 0:
            self._drained.set()
        self.write(reply)

    async def finish(self, timeout: float) -> None:
        """Wait (bounded) for the answers still owed before the connection closes."""
        if self.pending:
            try:
                async with asyncio.timeout(timeout):
                    await self._drained.wait()
            except TimeoutError:
                pass

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """One length-prefixed message, or None at EOF, on a timeout or a zero length."""
        limits = self.owner.limits
        try:
            async with asyncio.timeout(limits.tcp_idle_timeout):
                prefix = await reader.readexactly(2)
            length = wire.U16.unpack(prefix)[0]
            if length == 0:
                return None
            async with asyncio.timeout(limits.tcp_read_timeout):
                return await reader.readexactly(length)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None

    def write(self, reply: bytes) -> None:
        writer = self.writer
        if not reply or writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() > TCP_WRITE_BUFFER_LIMIT:
            # A client that does not read its answers is cut off. abort(), not close(): close()
            # would keep the socket and its buffered answers until a client that never reads
            # has read them, i.e. forever.
            writer.transport.abort()
            return
        self.owner.stats.rcodes[reply[3] & 0x0F] += 1
        writer.write(wire.U16.pack(len(reply)) + reply)
