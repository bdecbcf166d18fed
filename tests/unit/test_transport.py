"""One exchange with one server, in process, against tiny UDP+TCP responders on loopback."""

from __future__ import annotations

import asyncio
import struct
import time

import dns.flags
import dns.message
import dns.rrset
import pytest

from consuldns.consul.transport import AgentTransport
from consuldns.dns import wire
from consuldns.errors import UpstreamError
from consuldns.upstream.group import Group
from consuldns.upstream.transport import Question, Server, Transport
from tests.unit.fakes import run

QUESTION = Question(wire.text_to_name("big.example.test"), wire.A)


def answer(query: dns.message.Message, count: int, *, truncated: bool) -> bytes:
    reply = dns.message.make_response(query)
    addresses = [f"192.0.2.{i}" for i in range(1, count + 1)]
    if addresses:
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                *addresses))
    if truncated:
        reply.flags |= dns.flags.TC
    return reply.to_wire()


class Responder(asyncio.DatagramProtocol):
    """UDP: always an empty reply with TC set, so the client asks again over TCP."""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, client) -> None:
        self.transport.sendto(answer(dns.message.from_wire(data), 0, truncated=True), client)


async def responder(tcp_truncated: bool) -> tuple[Server, asyncio.Server]:
    """A server on one loopback port: TC over UDP, then over TCP 3 addresses, with TC set
    when `tcp_truncated` (a partial answer that says so)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        query = dns.message.from_wire(await reader.readexactly(size))
        reply = answer(query, 3, truncated=tcp_truncated)
        writer.write(struct.pack("!H", len(reply)) + reply)
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    await asyncio.get_running_loop().create_datagram_endpoint(
        Responder, local_addr=("127.0.0.1", port))
    return Server("127.0.0.1", port), tcp


def test_a_tcp_reply_with_tc_is_a_failure_of_that_server():
    async def scenario():
        server, tcp = await responder(tcp_truncated=True)
        async with tcp:
            await Transport().ask(server, QUESTION, 1.0)

    with pytest.raises(UpstreamError, match="truncated"):
        run(scenario())


def test_the_agent_asked_over_tcp_only_fails_the_same_way():
    async def scenario():
        server, tcp = await responder(tcp_truncated=True)
        async with tcp:
            await AgentTransport(4096, "tcp", 3).ask(server, QUESTION, 1.0)

    with pytest.raises(UpstreamError, match="truncated"):
        run(scenario())


def test_the_group_fails_over_from_a_truncated_tcp_reply():
    async def scenario():
        partial, partial_tcp = await responder(tcp_truncated=True)
        whole, whole_tcp = await responder(tcp_truncated=False)
        async with partial_tcp, whole_tcp:
            group = Group("default", [partial, whole], Transport())
            got = await group.resolve(QUESTION, time.monotonic() + 2.0)
        return got, partial

    got, partial = run(scenario())
    assert got.transport == "tcp" and not got.reply.truncated
    assert len(got.reply.section(0)) == 3
    assert partial.failures == 1
