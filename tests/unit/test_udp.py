"""The UDP loop, in process: a fake socket, the real handler with a fake upstream group."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode

from consuldns import packetio
from consuldns.serve.access import AccessList
from consuldns.serve.udp import DATAGRAMS_PER_WAKEUP, UdpListener
from tests.unit.fakes import FakeSocket, run
from tests.unit.helpers import query_bytes
from tests.unit.test_handler import WWW, Setup

CLIENT = ("127.0.0.1", 40000)
OUTSIDER = ("203.0.113.9", 40000)


def listener_for(sock: FakeSocket, setup: Setup) -> UdpListener:
    # The pure-Python packet I/O calls recvfrom/sendto, which the fake socket has.
    return UdpListener(sock, setup.handler, AccessList(), setup.handler.stats,
                       packetio.PURE_PYTHON)


def rcodes(sock: FakeSocket) -> list[int]:
    return [dns.message.from_wire(data).rcode() for data, _ in sock.sent]


def test_a_miss_is_answered_when_its_exchange_ends_and_a_hit_inside_the_callback():
    async def scenario():
        setup = Setup()
        sock = FakeSocket([(query_bytes(WWW, qid=1), CLIENT)])
        listener = listener_for(sock, setup)
        listener.on_readable()
        before = list(sock.sent)
        await asyncio.sleep(0.01)
        sock.incoming.append((query_bytes(WWW, qid=2), CLIENT))
        listener.on_readable()
        return before, sock

    before, sock = run(scenario())
    assert before == []  # the miss waits for upstream
    assert [dns.message.from_wire(d).id for d, _ in sock.sent] == [1, 2]
    assert {client for _, client in sock.sent} == {CLIENT}


def test_clients_outside_the_acl_get_refused_and_upstream_is_not_asked():
    async def scenario():
        setup = Setup()
        sock = FakeSocket([(query_bytes(WWW), OUTSIDER)])
        listener_for(sock, setup).on_readable()
        await asyncio.sleep(0.01)
        return setup, sock

    setup, sock = run(scenario())
    assert rcodes(sock) == [dns.rcode.REFUSED] and setup.upstream.asked == []


def test_one_wakeup_reads_at_most_datagrams_per_wakeup():
    async def scenario():
        setup = Setup()
        sock = FakeSocket([(b"\x00", CLIENT)] * (DATAGRAMS_PER_WAKEUP + 5))
        listener = listener_for(sock, setup)
        listener.on_readable()
        first = setup.handler.stats.queries["udp"]
        listener.on_readable()
        return first, setup.handler.stats

    first, stats = run(scenario())
    assert first == DATAGRAMS_PER_WAKEUP and stats.queries["udp"] == DATAGRAMS_PER_WAKEUP + 5
    assert stats.dropped == DATAGRAMS_PER_WAKEUP + 5  # unreadable: dropped, never answered


def test_a_receive_error_is_skipped_and_a_full_send_buffer_counts_a_drop():
    async def scenario():
        setup = Setup()
        await setup.ask(WWW)  # cached
        sock = FakeSocket([ConnectionRefusedError(), (query_bytes(WWW), CLIENT)])
        sock.send_error = BlockingIOError()
        listener = listener_for(sock, setup)
        listener.on_readable()  # the error ends this wakeup; the next one reads on
        listener.on_readable()
        return setup.handler.stats

    stats = run(scenario())
    assert stats.queries["udp"] == 1 and stats.dropped == 1


def test_replies_made_in_one_pass_of_the_loop_leave_in_one_send_batch():
    batches = []

    def send_batch(sock, pairs):
        batches.append(len(pairs))
        return packetio.PURE_PYTHON.send_batch(sock, pairs)

    async def scenario():
        setup = Setup()
        setup.upstream.gate = asyncio.Event()
        sock = FakeSocket([(query_bytes(WWW, qid=qid), CLIENT) for qid in range(10)])
        counting = packetio.PURE_PYTHON._replace(send_batch=send_batch)
        UdpListener(sock, setup.handler, AccessList(), setup.handler.stats,
                    counting).on_readable()
        await asyncio.sleep(0)
        setup.upstream.gate.set()
        while len(sock.sent) < 10:
            await asyncio.sleep(0)
        return sock

    sock = run(scenario())
    assert batches == [10]  # the ten waiters of one exchange, one system call
    assert sorted(dns.message.from_wire(data).id for data, _ in sock.sent) == list(range(10))
