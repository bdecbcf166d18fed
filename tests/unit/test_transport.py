"""One exchange with one server, in process, against tiny UDP+TCP responders on loopback."""

from __future__ import annotations

import asyncio
import struct
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from consuldns.consul.transport import AgentTransport
from consuldns.dns import wire
from consuldns.errors import UpstreamError, UpstreamTimeout
from consuldns.upstream import transport as upstream_transport
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


# ------------------------------------------------------------------ EDNS, IDs, late answers


class Scripted(asyncio.DatagramProtocol):
    """UDP: `reply(query)` answers each query (None: silent) after `delay` seconds; records
    each query's ID and whether it had an OPT record."""

    def __init__(self, reply, delay: float = 0.0):
        self.reply = reply
        self.delay = delay
        self.queries: list[tuple[int, bool]] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, client) -> None:
        query = dns.message.from_wire(data)
        self.queries.append((query.id, query.edns >= 0))
        reply = self.reply(query)
        if reply is not None:
            asyncio.get_running_loop().call_later(self.delay, self.transport.sendto, reply,
                                                  client)


async def scripted(reply, delay: float = 0.0) -> tuple[Server, Scripted]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Scripted(reply, delay), local_addr=("127.0.0.1", 0))
    return Server("127.0.0.1", transport.get_extra_info("sockname")[1]), protocol


def formerr_to_edns(query: dns.message.Message) -> bytes:
    """An old server: FORMERR (without OPT) to a query with EDNS, an answer to one without."""
    if query.edns >= 0:
        reply = dns.message.make_response(query)
        reply.use_edns(False)
        reply.set_rcode(dns.rcode.FORMERR)
        return reply.to_wire()
    return answer(query, 1, truncated=False)


def test_the_retry_without_edns_after_formerr_has_an_id_of_its_own(monkeypatch):
    """Design rule: a fresh random ID per upstream query, the retry without EDNS too."""
    ids = iter([0x1111, 0x2222])
    monkeypatch.setattr(upstream_transport, "new_query_id", lambda: next(ids))

    async def scenario():
        server, responder = await scripted(formerr_to_edns)
        got = await Transport().ask(server, QUESTION, 1.0)
        return got, responder.queries

    got, queries = run(scenario())
    assert queries == [(0x1111, True), (0x2222, False)]
    assert got.transport == "udp" and got.reply.rcode == wire.NOERROR and got.reply.id == 0x2222


def late_answers(reply, deadline: float = 0.1, delay: float = 0.3, wait: float = 1.0):
    """What the late callback of a group gets from a server that answers `reply(query)`
    `delay` seconds after the query, past the group's deadline."""

    async def scenario():
        server, _ = await scripted(reply, delay)
        got: list = []
        with pytest.raises(UpstreamTimeout):
            await Group("default", [server], Transport()).resolve(
                QUESTION, time.monotonic() + deadline, got.append)
        await asyncio.sleep(wait)
        return server, got

    return run(scenario())


def test_a_late_complete_answer_reaches_the_late_callback():
    server, got = late_answers(lambda query: answer(query, 2, truncated=False))
    assert len(got) == 1
    late = got[0]
    assert late.server is server and late.transport == "udp"
    assert late.reply.rcode == wire.NOERROR and len(late.reply.section(0)) == 2


def servfail(query: dns.message.Message) -> bytes:
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.SERVFAIL)
    return reply.to_wire()


def unreadable(query: dns.message.Message) -> bytes:
    """The ID and question of the query, and three answer records that are not there."""
    reply = bytearray(dns.message.make_response(query).to_wire())
    reply[6:8] = struct.pack("!H", 3)
    return bytes(reply)


@pytest.mark.parametrize("reply", [
    lambda query: answer(query, 2, truncated=True),  # incomplete: TCP would have been asked
    unreadable,
    servfail,  # the group would have failed over
], ids=["truncated", "unreadable", "servfail"])
def test_a_late_reply_the_group_would_not_have_used_goes_nowhere(reply):
    _, got = late_answers(reply, wait=0.5)
    assert got == []
