"""One UDP exchange, in process, against a scripted responder on loopback: the ID check, the
late listener and the reuse of pooled sockets."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from consuldns.dns import wire
from consuldns.errors import UpstreamTimeout
from consuldns.upstream import sockets
from consuldns.upstream.transport import Question, Server, exchange_udp
from tests.unit.fakes import run
from tests.unit.helpers import reply_bytes

NAME = "www.example.test"
QUESTION = Question(wire.text_to_name(NAME), wire.A)


class Scripted(asyncio.DatagramProtocol):
    """Answers each query with `replies(query_id)`: a list of (delay, reply bytes); records
    the source port of each query in `ports`."""

    def __init__(self, replies):
        self.replies = replies
        self.ports: list[int] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, client) -> None:
        self.ports.append(client[1])
        loop = asyncio.get_running_loop()
        for delay, reply in self.replies(wire.U16.unpack_from(data)[0]):
            loop.call_later(delay, self.transport.sendto, reply, client)


async def scripted(replies) -> Server:
    return (await scripted_with_ports(replies))[0]


async def scripted_with_ports(replies) -> tuple[Server, list[int]]:
    """The server, and the list its responder fills with each query's source port."""
    transport, responder = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Scripted(replies), local_addr=("127.0.0.1", 0))
    return Server("127.0.0.1", transport.get_extra_info("sockname")[1]), responder.ports


async def ask_in_turn(server: Server, count: int, timeout: float = 1.0) -> None:
    for qid in range(count):
        message = wire.build_query(qid, QUESTION.qname, wire.A, wire.CLASS_IN)
        await exchange_udp(server, message, qid, QUESTION, timeout)


def answer(qid: int, address: str) -> bytes:
    return reply_bytes(NAME, "A", [address], qid=qid)


def test_a_reply_with_another_id_is_ignored_even_when_it_answers_the_question():
    async def scenario():
        server = await scripted(lambda qid: [(0, answer(qid ^ 1, "203.0.113.6")),
                                             (0.05, answer(qid, "192.0.2.1"))])
        message = wire.build_query(7, QUESTION.qname, wire.A, wire.CLASS_IN)
        return wire.parse_reply(await exchange_udp(server, message, 7, QUESTION, 1.0))

    reply = run(scenario())
    assert reply.id == 7 and reply.records[0].rdata == bytes([192, 0, 2, 1])


def test_a_reply_after_the_deadline_goes_to_the_late_callback():
    async def scenario():
        server = await scripted(lambda qid: [(0.3, answer(qid, "192.0.2.1"))])
        message = wire.build_query(9, QUESTION.qname, wire.A, wire.CLASS_IN)
        late = asyncio.get_running_loop().create_future()
        with pytest.raises(UpstreamTimeout):
            await exchange_udp(server, message, 9, QUESTION, 0.1, late.set_result)
        return await asyncio.wait_for(late, 2)

    assert wire.parse_reply(run(scenario())).id == 9


def test_without_a_late_callback_a_late_reply_goes_nowhere():
    async def scenario():
        server = await scripted(lambda qid: [(0.2, answer(qid, "192.0.2.1"))])
        message = wire.build_query(5, QUESTION.qname, wire.A, wire.CLASS_IN)
        with pytest.raises(UpstreamTimeout):
            await exchange_udp(server, message, 5, QUESTION, 0.05)
        await asyncio.sleep(0.3)  # the reply arrives at a closed port: nothing breaks

    run(scenario())


def test_a_socket_carries_at_most_max_uses_queries_then_a_new_port_is_used():
    async def scenario():
        server, ports = await scripted_with_ports(lambda qid: [(0, answer(qid, "192.0.2.1"))])
        await ask_in_turn(server, 2 * sockets.MAX_USES + 1)
        return ports

    ports = run(scenario())
    runs = [len(list(group)) for _, group in itertools.groupby(ports)]
    assert runs == [sockets.MAX_USES, sockets.MAX_USES, 1] and len(set(ports)) == 3


def test_a_socket_whose_query_timed_out_is_not_reused():
    async def scenario():
        server, ports = await scripted_with_ports(
            lambda qid: [(0, answer(qid, "192.0.2.1"))] if len(ports) > 1 else [])  # 1st: silent
        with pytest.raises(UpstreamTimeout):
            await ask_in_turn(server, 1, timeout=0.05)
        await ask_in_turn(server, 1)
        return ports

    first, second = run(scenario())
    assert first != second


def test_idle_sockets_are_closed_and_not_reused_after_max_age(monkeypatch):
    monkeypatch.setattr(sockets, "MAX_AGE", 0.05)

    async def scenario():
        server, ports = await scripted_with_ports(lambda qid: [(0, answer(qid, "192.0.2.1"))])
        await ask_in_turn(server, 1)
        pool = sockets.pool_for(server.family, server.host, server.port)
        idle = list(pool.idle)
        while pool.idle:  # the sweeper closes it
            await asyncio.sleep(0.01)
        await ask_in_turn(server, 1)
        return idle, ports

    idle, ports = run(scenario())
    assert len(idle) == 1 and idle[0].sock.fileno() == -1
    assert ports[0] != ports[1]
