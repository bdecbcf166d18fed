"""handleRecurse: forward the query unchanged to each recursor in turn and relay the reply."""

from __future__ import annotations

import asyncio
import struct

from .plan import NOERROR, NXDOMAIN, SERVFAIL
from .shaping import modern_opt, reply_flags
from .wire import Query, encode

DEFAULT_PORT = 53


def split_host_port(address: str) -> tuple[str, int]:
    """("127.0.0.1", 53) from "127.0.0.1", "127.0.0.1:5353", "[::1]:53" or "::1"."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, DEFAULT_PORT


class _OneReply(asyncio.DatagramProtocol):
    def __init__(self, query_id: bytes, future: asyncio.Future) -> None:
        self.query_id = query_id
        self.future = future

    def datagram_received(self, data: bytes, addr) -> None:
        if data[:2] == self.query_id and not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


async def _exchange_udp(data: bytes, host: str, port: int, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _OneReply(data[:2], future), remote_addr=(host, port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(future, timeout)
    finally:
        transport.close()


async def _exchange_tcp(data: bytes, host: str, port: int, timeout: float) -> bytes:
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(length)
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


def failure_reply(query: Query, modern: bool) -> bytes:
    """All recursors failed: SERVFAIL with RA=1 (and the OPT echoed, modern)."""
    flags = reply_flags(query, aa=False, ra=True, modern=modern)
    extra = modern_opt(query, SERVFAIL, True) if modern else []
    return encode(query, flags, SERVFAIL, ([], [], extra), modern)


async def forward(data: bytes, query: Query, transport: str, recursors: tuple[str, ...],
                  timeout: float, modern: bool) -> bytes:
    """The first usable upstream reply; modern skips rcodes other than NOERROR/NXDOMAIN."""
    exchange = _exchange_udp if transport == "udp" else _exchange_tcp
    for recursor in recursors:
        host, port = split_host_port(recursor)
        try:
            reply = await exchange(data, host, port, timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            continue
        if modern and len(reply) >= 4 and reply[3] & 0xF not in (NOERROR, NXDOMAIN):
            continue
        return reply
    return failure_reply(query, modern)
