"""The HTTP listener(s): TCP and/or a unix socket, keep-alive connections, per-IP limits.

Each connection is counted from accept to close (a held blocking query keeps its
connection, as on HTTP/1.1); one over http_max_conns_per_client from an IP gets
Consul's raw 429 and is closed. The http_down fault closes the listeners and every
connection; clearing it listens again on the same addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading

from .http_api import HttpApi
from .http_query import ChangeFeed
from .http_wire import (
    MAX_HEAD_BYTES,
    TOO_MANY_CONNECTIONS_RESPONSE,
    BadRequest,
    Request,
    Response,
    encode_response,
    parse_head,
)
from .state import DoubleState

UNIX_CLIENT = "unix"  # the client key of unix-socket connections (never limited)
APPLY_TIMEOUT = 5.0


class HttpConnection(asyncio.Protocol):
    """One client connection: requests answered in order until either side closes."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.client = UNIX_CLIENT
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._data = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._eof = False
        self._handling = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client = peer[0]
        if not self.server.admit(self):
            transport.write(TOO_MANY_CONNECTIONS_RESPONSE)  # type: ignore[attr-defined]
            transport.close()
            return
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._data.set()

    def eof_received(self) -> bool:
        self._eof = True
        self._data.set()
        if self._handling:
            # The client left while its request was in progress (a held blocking query):
            # Go cancels the request; the double frees the connection at once.
            self.transport.abort()
        return True  # between requests, _serve answers what was read, then closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None:
            self.server.release(self)
            self._task.cancel()  # also ends a held blocking query at once

    async def _read_until(self, size_ok) -> bool:
        while not size_ok():
            if self._eof:
                return False
            self._data.clear()
            await self._data.wait()
        return True

    async def _next_request(self) -> Request | None:
        if not await self._read_until(lambda: b"\r\n\r\n" in self._buffer
                                      or len(self._buffer) > MAX_HEAD_BYTES):
            return None
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            raise BadRequest("request head too large")
        request = parse_head(bytes(self._buffer[:end]))
        body_end = end + 4 + request.body_length
        if not await self._read_until(lambda: len(self._buffer) >= body_end):
            return None
        del self._buffer[:body_end]  # request bodies are read and ignored
        return request

    async def _serve(self) -> None:
        try:
            while True:
                request = await self._next_request()
                if request is None:
                    break
                self._handling = True
                endpoint, response = await self.server.api.handle(request)
                self._handling = False
                self.server.state.http_stats.count(endpoint, request.path, response.status)
                self.transport.write(encode_response(response, request.keep_alive))
                if not request.keep_alive:
                    break
        except BadRequest as exc:
            self.transport.write(encode_response(Response.text(400, str(exc)), False))
        self.transport.close()


class HttpServer:
    """Serves HttpApi on host:port (TCP, port 0 = free) and/or a unix socket path."""

    def __init__(self, state: DoubleState, host: str | None, port: int = 0,
                 unix_path: str | None = None) -> None:
        self.state = state
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.feed: ChangeFeed | None = None
        self.api: HttpApi | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[HttpConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.feed = ChangeFeed()
        self.api = HttpApi(self.state, self.feed)
        if not self.state.faults.http_down:
            await self._listen()
        self.state.add_listener(self._state_changed)

    async def stop(self) -> None:
        self.state.remove_listener(self._state_changed)
        await self._close_all()
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        if self.host is not None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            server = await loop.create_server(lambda: HttpConnection(self), self.host, self.port,
                                              family=family, reuse_address=True)
            self.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
            server = await loop.create_unix_server(lambda: HttpConnection(self), self.unix_path)
            self._servers.append(server)

    async def _close_all(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for connection in list(self._connections):
            connection.transport.abort()
        for server in servers:
            await server.wait_closed()

    def admit(self, connection: HttpConnection) -> bool:
        limit = self.state.http_config.max_conns_per_client
        if connection.client == UNIX_CLIENT:
            limit = 0
        if not self.state.http_stats.admit(connection.client, limit):
            return False
        self._connections.add(connection)
        return True

    def release(self, connection: HttpConnection) -> None:
        self._connections.discard(connection)
        self.state.http_stats.closed(connection.client)

    def _state_changed(self) -> None:
        """From the changing thread: wake held queries, open or close the listeners; waits for
        the loop so a control call returns only once the HTTP side reflects it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self._apply(), loop)
        if threading.get_ident() != self._loop_thread:
            with contextlib.suppress(Exception):
                future.result(APPLY_TIMEOUT)

    async def _apply(self) -> None:
        self.feed.notify()
        down = self.state.faults.http_down
        if down and self._servers:
            await self._close_all()
        elif not down and not self._servers:
            await self._listen()
