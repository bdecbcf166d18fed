"""The upstream fault matrix (issue 7): each misbehaviour, and what the client sees.

One consuldns serves the whole module: every fault is a scripted upstream (FakeUpstream) of
its own forward zone `<fault>.test.`; the default upstream is unbound and the agent is the
Consul double. After every case the server must still answer a well-formed probe at once:
no hang, no crash, and nothing the fault produced may be cached.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from tests.e2e.client import addresses, ask
from tests.e2e.fake_upstream import RAW, RESET, FakeUpstream, answer_a, frame, truncated
from tests.harness import catalogs
from tests.harness import upstream as zone
from tests.harness.consuldns import ConsulDNS, start_consuldns

GOOD = "192.0.2.80"
LATE_ADDRESS = "192.0.2.81"
EVIL = "203.0.113.66"
DEADLINE = 2.0  # upstream.timeout as _config sets it: one deadline per client query
# Bounds on time: a failure passed on "at once" must come well before the deadline; how much
# sooner is the machine's speed, not the behaviour (a loaded CI machine is slow).
FAST = DEADLINE / 2
LATE = DEADLINE + 1.0  # "at the deadline": not a second try or a wait for a late reply


def rcode_reply(query: dns.message.Message, rcode: int) -> bytes:
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    return reply.to_wire()


# ---------------------------------------------------------------- the misbehaving servers


def silent(fake, query, transport):
    return None


def slow(fake, query, transport):
    """Answers 2.4 s later, beyond the 2 s deadline, the first time a name is asked (that late
    reply is cached for the client's retry); at once the next time."""
    name = query.question[0].name.to_text().lower()
    if sum(1 for r in fake.received if r.name == name) > 1:
        return answer_a(query, [GOOD])
    return fake.answer_later(2.4, answer_a(query, [LATE_ADDRESS]))


def slow_within_deadline(fake, query, transport):
    return fake.answer_later(0.8, answer_a(query, [GOOD]))


def servfail(fake, query, transport):
    return rcode_reply(query, dns.rcode.SERVFAIL)


def refused(fake, query, transport):
    return rcode_reply(query, dns.rcode.REFUSED)


def formerr_to_edns(fake, query, transport):
    """An old server: FORMERR (without OPT) to any query with EDNS, an answer without."""
    if query.edns >= 0:
        reply = dns.message.make_response(query)
        reply.use_edns(False)
        reply.set_rcode(dns.rcode.FORMERR)
        return reply.to_wire()
    return answer_a(query, [GOOD])


def garbage(fake, query, transport):
    """The right ID and question, then an answer record cut in the middle."""
    good = answer_a(query, [EVIL])
    return good[:-3]


def bad_address(fake, query, transport):
    """An A record of 3 octets: nginx would reject the whole reply ("invalid A record")."""
    good = bytearray(answer_a(query, [EVIL]))
    struct.pack_into("!H", good, len(good) - 6, 3)  # RDLENGTH 3 instead of 4
    return bytes(good[:-1])


def noise_then_answer(fake, query, transport):
    """Random datagrams (some with the right ID) before the real answer."""
    noise = [struct.pack("!H", query.id) + os.urandom(40), os.urandom(7), os.urandom(300)]
    return [*noise, answer_a(query, [GOOD])]


def spoofed(fake, query, transport):
    """A wrong ID, a wrong question and a reply from another port, then the real answer."""
    evil = answer_a(query, [EVIL])
    wrong_id = struct.pack("!H", (query.id + 1) % 65536) + evil[2:]
    other = dns.message.make_query("victim.spoof.test", "A")
    other.id = query.id
    wrong_question = answer_a(other, [EVIL])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind((fake.host, 0))
        stranger.sendto(evil, (fake.host, fake.received[-1].port))  # right ID, wrong port
    return [wrong_id, wrong_question, answer_a(query, [GOOD])]


def tc_and_tcp_refused(fake, query, transport):
    return truncated(query)


def tcp_reset_mid_answer(fake, query, transport):
    if transport == "udp":
        return truncated(query)
    full = frame(answer_a(query, [f"198.18.0.{i}" for i in range(1, 60)]))
    return [RAW + full[:len(full) // 2], RESET]


FAULTS: dict[str, Callable] = {
    "silent": silent,
    "slow": slow,
    "slow-within-deadline": slow_within_deadline,
    "servfail": servfail,
    "refused": refused,
    "formerr-edns": formerr_to_edns,
    "garbage": garbage,
    "bad-address": bad_address,
    "noise": noise_then_answer,
    "spoof": spoofed,
    "tc-tcp-refused": tc_and_tcp_refused,
    "tcp-reset": tcp_reset_mid_answer,
}


class Matrix:
    def __init__(self, server: ConsulDNS, fakes: dict[str, FakeUpstream], double) -> None:
        self.server = server
        self.fakes = fakes
        self.double = double

    def asked(self, fault: str, name: str) -> list:
        return [r for r in self.fakes[fault].received if r.name == name.lower() + "."]

    def timed(self, name: str, rdtype: str = "A", **kwargs) -> tuple[dns.message.Message, float]:
        started = time.monotonic()
        reply = ask(self.server, name, rdtype, timeout=6, **kwargs)
        return reply, time.monotonic() - started

    def assert_healthy(self) -> None:
        """The probe: a well-formed query is answered at once, over UDP and TCP."""
        assert self.server.alive()
        for tcp in (False, True):
            reply, elapsed = self.timed(zone.WWW.name, tcp=tcp)
            assert addresses(reply) == list(zone.WWW.values) and elapsed < DEADLINE


def _config(fakes: dict[str, FakeUpstream]) -> str:
    blocks = [f'[[zones]]\nname = "{fault}.test"\nservers = ["{fake.address}"]\n'
              for fault, fake in fakes.items()]
    return f"[upstream]\ntimeout = {DEADLINE}\n\n" + "\n".join(blocks)


@pytest.fixture(scope="module")
def matrix(upstream, tmp_path_factory) -> Iterator[Matrix]:
    from tests.consul_double.process import start_double

    fakes: dict[str, FakeUpstream] = {}
    for fault, behaviour in FAULTS.items():
        fake = FakeUpstream(lambda query, transport, b=behaviour, f=fault: b(fakes[f], query,
                                                                              transport))
        fakes[fault] = fake
    fakes["tc-tcp-refused"].tcp.close()  # nothing accepts TCP: connection refused
    double = start_double(catalogs.default_catalog())
    server = None
    try:
        server = start_consuldns(tmp_path_factory.mktemp("faults"), consul=double,
                                 upstreams=[upstream], config=_config(fakes))
        yield Matrix(server, fakes, double)
    finally:
        if server is not None:
            server.stop()
        double.stop()
        for fake in fakes.values():
            fake.stop()


@pytest.fixture
def m(matrix: Matrix) -> Iterator[Matrix]:
    yield matrix
    matrix.double.control.clear_faults()
    matrix.assert_healthy()


# ------------------------------------------------------------------------------ the matrix


def test_silent_server_servfail_at_the_deadline(m):
    reply, elapsed = m.timed("a.silent.test")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert DEADLINE - 0.2 < elapsed < LATE


def test_slow_server_beyond_the_deadline_servfail_then_the_late_reply_serves_the_retry(m):
    reply, elapsed = m.timed("a.slow.test")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert elapsed < LATE
    # The late reply (2.4 s) arrives within the grace period (5 s) and is cached: the
    # client's retry, which comes after that (stub clients wait seconds), is a hit and the
    # slow server is not asked again.
    assert wait_for(lambda: m.fakes["slow"].late_sent == 1)
    assert wait_for(lambda: addresses(m.timed("a.slow.test")[0]) == [LATE_ADDRESS], 1.0)
    assert len(m.asked("slow", "a.slow.test")) == 1


def test_slow_server_within_the_deadline_is_waited_for(m):
    reply, elapsed = m.timed("a.slow-within-deadline.test")
    assert addresses(reply) == [GOOD] and 0.7 < elapsed < DEADLINE
    reply, elapsed = m.timed("a.slow-within-deadline.test")
    assert addresses(reply) == [GOOD] and elapsed < 0.7  # cached: not the 0.8 s upstream
    assert len(m.asked("slow-within-deadline", "a.slow-within-deadline.test")) == 1


def test_servfail_is_passed_on_quickly_and_remembered_briefly(m):
    reply, elapsed = m.timed("a.servfail.test")
    assert reply.rcode() == dns.rcode.SERVFAIL and elapsed < FAST
    reply, _ = m.timed("a.servfail.test")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert len(m.asked("servfail", "a.servfail.test")) == 1  # servfail_ttl spares the server


def test_refused_becomes_servfail_and_is_not_cached(m):
    for _ in range(2):
        reply, elapsed = m.timed("a.refused.test")
        assert reply.rcode() == dns.rcode.SERVFAIL and elapsed < FAST
    assert len(m.asked("refused", "a.refused.test")) == 2


def test_formerr_to_edns_is_retried_without_edns(m):
    reply, elapsed = m.timed("a.formerr-edns.test")
    assert addresses(reply) == [GOOD] and elapsed < FAST
    edns = [r.has_edns for r in m.asked("formerr-edns", "a.formerr-edns.test")]
    assert edns == [True, False]


def test_garbage_reply_servfail_fast_and_nothing_cached(m):
    for _ in range(2):
        reply, elapsed = m.timed("a.garbage.test")
        assert reply.rcode() == dns.rcode.SERVFAIL and elapsed < FAST
        assert reply.answer == []
    assert len(m.asked("garbage", "a.garbage.test")) == 2


def test_address_record_of_the_wrong_length_servfail_and_nothing_cached(m):
    for _ in range(2):
        reply, elapsed = m.timed("a.bad-address.test")
        assert reply.rcode() == dns.rcode.SERVFAIL and elapsed < FAST
    assert len(m.asked("bad-address", "a.bad-address.test")) == 2


def test_noise_is_ignored_and_the_real_answer_accepted(m):
    reply, elapsed = m.timed("a.noise.test")
    assert addresses(reply) == [GOOD] and elapsed < FAST


def test_spoofed_replies_are_ignored_and_the_real_answer_accepted(m):
    reply, elapsed = m.timed("a.spoof.test")
    assert addresses(reply) == [GOOD] and elapsed < FAST
    assert addresses(m.timed("a.spoof.test")[0]) == [GOOD]  # the cache holds the real one
    # The reply to a question never asked was not cached: asking it goes upstream.
    m.timed("victim.spoof.test")
    assert len(m.asked("spoof", "victim.spoof.test")) == 1


def test_tc_over_udp_with_tcp_refused_servfail_fast(m):
    for tcp in (False, True):
        reply, elapsed = m.timed("a.tc-tcp-refused.test", tcp=tcp)
        assert reply.rcode() == dns.rcode.SERVFAIL and elapsed < FAST
        assert not reply.flags & dns.flags.TC
    assert len(m.asked("tc-tcp-refused", "a.tc-tcp-refused.test")) == 2  # nothing cached


def test_tcp_reset_mid_answer_servfail_fast_and_nothing_cached(m):
    for _ in range(2):
        reply, elapsed = m.timed("a.tcp-reset.test", edns=0, payload=4096)
        assert reply.rcode() == dns.rcode.SERVFAIL and elapsed < FAST
    asked = m.asked("tcp-reset", "a.tcp-reset.test")
    assert [r.transport for r in asked] == ["udp", "tcp", "udp", "tcp"]


def test_agent_lost_its_servers_servfail_after_the_delay_never_nxdomain(m):
    control = m.double.control
    assert addresses(m.timed("db.service.consul")[0]) == [catalogs.DB_ADDRESS]
    control.set_fault("servfail", delay=0.5)
    reply, elapsed = m.timed("never-asked.service.consul")
    # The agent's SERVFAIL is passed on when it comes (0.5 s), not at the deadline.
    assert reply.rcode() == dns.rcode.SERVFAIL and 0.45 < elapsed < DEADLINE - 0.5
    stale, elapsed = m.timed("db.service.consul")  # asked before: the stale answer
    assert addresses(stale) == [catalogs.DB_ADDRESS] and stale.answer[0].ttl == 30
    assert elapsed < DEADLINE - 0.5
    control.clear_faults()
    assert wait_for(lambda: m.timed("db.service.consul")[0].answer[0].ttl == 0)


def test_agent_silent_servfail_at_the_deadline_stale_for_known_names(m):
    control = m.double.control
    assert sorted(addresses(m.timed("web.service.consul")[0])) == sorted(catalogs.WEB_HEALTHY)
    control.set_fault("drop")
    unseen: list = []
    thread = threading.Thread(target=lambda: unseen.append(m.timed("other.service.consul")))
    thread.start()
    stale, _ = m.timed("web.service.consul")
    thread.join()
    reply, elapsed = unseen[0]
    assert reply.rcode() == dns.rcode.SERVFAIL and elapsed < LATE
    assert sorted(addresses(stale)) == sorted(catalogs.WEB_HEALTHY)
    assert stale.answer[0].ttl == 30
    again, elapsed = m.timed("web.service.consul")
    assert addresses(again) and elapsed < FAST  # known failure: stale at once
    control.clear_faults()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
