"""One UDP exchange, in process, against a scripted responder on loopback: the ID check and
the late listener."""

from __future__ import annotations

import asyncio

import pytest

from consuldns.dns import wire
from consuldns.errors import UpstreamTimeout
from consuldns.upstream.transport import Question, Server, exchange_udp
from tests.unit.fakes import run
from tests.unit.helpers import reply_bytes

NAME = "www.example.test"
QUESTION = Question(wire.text_to_name(NAME), wire.A)


class Scripted(asyncio.DatagramProtocol):
    """Answers each query with `replies(query_id)`: a list of (delay, reply bytes)."""

    def __init__(self, replies):
        self.replies = replies

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, client) -> None:
        loop = asyncio.get_running_loop()
        for delay, reply in self.replies(wire.U16.unpack_from(data)[0]):
            loop.call_later(delay, self.transport.sendto, reply, client)


async def scripted(replies) -> Server:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Scripted(replies), local_addr=("127.0.0.1", 0))
    return Server("127.0.0.1", transport.get_extra_info("sockname")[1])


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
