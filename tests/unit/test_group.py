"""The upstream group, in process: order, deadline shares, failover, health marks."""

from __future__ import annotations

import errno
import socket
import time
from types import SimpleNamespace

import dns.rcode
import pytest

from consuldns.consul.transport import AgentTransport
from consuldns.dns import wire
from consuldns.errors import OutOfSockets, UpstreamError, UpstreamTimeout
from consuldns.upstream import sockets as sockets_module
from consuldns.upstream.group import Group
from consuldns.upstream.transport import Answer, Question, Server, Transport, parse_server
from tests.unit.fakes import Clock, run
from tests.unit.helpers import reply_bytes

QUESTION = Question(wire.text_to_name("www.example.test"), wire.A)
GOOD = reply_bytes("www.example.test", "A", ["192.0.2.1"])


class ScriptedTransport:
    """Each server's behaviour: reply bytes, an rcode to answer, or "silent" (uses its
    whole share of the deadline, then times out)."""

    def __init__(self, clock: Clock, script: dict[str, object]):
        self.clock = clock
        self.script = script
        self.calls: list[tuple[str, float]] = []

    async def ask(self, server: Server, question: Question, timeout: float, now,
                  late=None) -> Answer:
        self.calls.append((server.address, round(timeout, 3)))
        behaviour = self.script[server.address]
        if behaviour == "silent":
            self.clock.advance(timeout)
            raise UpstreamTimeout("no reply in time")
        if isinstance(behaviour, int):
            raw = reply_bytes("www.example.test", "A", rcode=behaviour)
        else:
            raw = behaviour
        return Answer(wire.parse_reply(raw), raw, server, "udp", 0.001)


def group_of(script: dict[str, object], **kwargs) -> tuple[Group, ScriptedTransport, Clock]:
    clock = Clock()
    transport = ScriptedTransport(clock, script)
    servers = [parse_server(address) for address in script]
    return Group("default", servers, transport, now=clock, **kwargs), transport, clock


def test_each_server_gets_an_equal_share_of_what_remains_of_the_deadline():
    group, transport, clock = group_of({"192.0.2.1:53": "silent", "192.0.2.2:53": "silent",
                                        "192.0.2.3:53": GOOD})
    answer = run(group.resolve(QUESTION, clock() + 3.0))
    assert answer.server.address == "192.0.2.3:53"
    assert transport.calls == [("192.0.2.1:53", 1.0), ("192.0.2.2:53", 1.0),
                               ("192.0.2.3:53", 1.0)]


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR,
                                   dns.rcode.NOTIMP])
def test_error_rcodes_fail_over_to_the_next_server(rcode):
    group, _, clock = group_of({"192.0.2.1:53": rcode, "192.0.2.2:53": GOOD})
    assert run(group.resolve(QUESTION, clock() + 2.0)).server.address == "192.0.2.2:53"


def test_nxdomain_is_an_answer_not_a_failure():
    group, transport, clock = group_of({"192.0.2.1:53": dns.rcode.NXDOMAIN,
                                        "192.0.2.2:53": GOOD})
    answer = run(group.resolve(QUESTION, clock() + 2.0))
    assert answer.reply.rcode == wire.NXDOMAIN and len(transport.calls) == 1


def test_every_server_silent_is_a_timeout_at_the_deadline():
    group, _, clock = group_of({"192.0.2.1:53": "silent", "192.0.2.2:53": "silent"})
    start = clock()
    with pytest.raises(UpstreamTimeout):
        run(group.resolve(QUESTION, start + 2.0))
    assert clock() == pytest.approx(start + 2.0)


def test_every_server_answering_servfail_raises_with_that_rcode():
    group, _, clock = group_of({"192.0.2.1:53": dns.rcode.SERVFAIL})
    with pytest.raises(UpstreamError) as raised:
        run(group.resolve(QUESTION, clock() + 2.0))
    assert raised.value.rcode == wire.SERVFAIL


def test_a_server_is_marked_down_after_max_fails_and_tried_last_until_it_answers():
    script = {"192.0.2.1:53": dns.rcode.SERVFAIL, "192.0.2.2:53": GOOD}
    group, transport, clock = group_of(script, max_fails=2)
    for _ in range(2):
        run(group.resolve(QUESTION, clock() + 2.0))
    first = group.servers[0]
    assert first.down_since is not None and first.errors == 2
    transport.calls.clear()
    run(group.resolve(QUESTION, clock() + 2.0))
    assert transport.calls[0][0] == "192.0.2.2:53"  # the down server is tried last
    script["192.0.2.1:53"] = GOOD
    script["192.0.2.2:53"] = dns.rcode.SERVFAIL
    run(group.resolve(QUESTION, clock() + 2.0))
    assert first.down_since is None and first.failures == 0


def test_round_robin_starts_each_query_at_the_next_server():
    script = {"192.0.2.1:53": GOOD, "192.0.2.2:53": GOOD, "192.0.2.3:53": GOOD}
    group, _, clock = group_of(script, policy="round_robin")
    firsts = [run(group.resolve(QUESTION, clock() + 2.0)).server.address for _ in range(3)]
    assert sorted(firsts) == sorted(script)


# ------------------------------------------------------------------ the agent's transport


def reply_of(answers: int, *, edns: int = -1, size: int | None = None) -> wire.Reply:
    """A reply of the agent with `answers` A records; `size` pretends another length."""
    names = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(answers)]
    reply = wire.parse_reply(reply_bytes("web.service.consul", "A", names, edns=edns))
    if size is not None:
        reply.size = size
    return reply


@pytest.mark.parametrize("reply,incomplete", [
    (reply_of(2), False),  # no OPT, under the agent's 3-answer limit
    (reply_of(3), True),  # no OPT, at the limit: the agent may have trimmed
    (reply_of(1, size=512 - 63), True),  # no OPT, close to 512 bytes
    (reply_of(5, edns=0), False),  # OPT, far from our 4096 bytes
    (reply_of(5, edns=0, size=4096 - 127), True),  # OPT, within 128 bytes of 4096
    (reply_of(5, edns=0, size=4096 - 128), False),  # OPT, 128 bytes short
], ids=["few", "at-limit", "near-512", "edns-small", "edns-full", "edns-almost-full"])
def test_the_agent_transport_asks_again_over_tcp_when_a_reply_may_be_trimmed(reply,
                                                                             incomplete):
    assert AgentTransport(4096, "auto", 3).may_be_incomplete(reply, 4096) is incomplete
    assert AgentTransport(4096, "udp", 3).may_be_incomplete(reply, 4096) is False


# ------------------------------------------------------------------ local failures


def test_a_process_out_of_descriptors_never_counts_against_a_server(monkeypatch):
    """socket() failing with EMFILE is this process's trouble: the server stays up."""
    def no_socket(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(sockets_module, "socket",
                        SimpleNamespace(socket=no_socket, SOCK_DGRAM=socket.SOCK_DGRAM))
    first, second = parse_server("127.0.0.1:9"), parse_server("127.0.0.1:10")
    group = Group("default", [first, second], Transport(), max_fails=1)
    for _ in range(3):
        with pytest.raises(OutOfSockets):
            run(group.resolve(QUESTION, time.monotonic() + 1.0))
    assert (first.down_since, first.errors, first.failures) == (None, 0, 0)
    assert second.queries == 0  # the next server would fail the same way: not asked
