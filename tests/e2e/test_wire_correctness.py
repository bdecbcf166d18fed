"""Wire correctness (issue 13): what dig and dnspython see through `consuldns serve` when the
upstream compresses names inside rdata, answers an extended rcode, truncates over TCP or
adds records for other names, and what a client sending a malformed query with OPT gets.

One consuldns serves the module; its only upstream is a scripted FakeUpstream that answers
by the first label of the question (`mb.wire.test.` -> an MB record, ...).
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from tests.e2e.client import addresses, ask, ask_raw
from tests.e2e.fake_upstream import FakeUpstream, answer_a
from tests.harness.consuldns import ConsulDNS, start_consuldns
from tests.harness.tools import need

GOOD = "192.0.2.80"
EVIL = "203.0.113.66"
BADCOOKIE = 23


# ---------------------------------------------------------------- the scripted upstream


def names_in_rdata(query: dns.message.Message, rdtype: int, *labels: bytes,
                   extra: bytes = b"") -> bytes:
    """A reply whose one answer record holds a name per label, each compressed as the label
    and a pointer to the owner's parent. The owner is written in full, so the pointers aim
    at octets that a reply written any other way (consuldns points owners at the question)
    does not have there."""
    qname = query.question[0].name.to_wire()
    header = struct.pack("!HHHHHH", query.id, 0x8180, 1, 1, 0, 0)
    question = qname + struct.pack("!HH", rdtype, 1)
    owner_offset = len(header) + len(question)
    parent = struct.pack("!H", 0xC000 | (owner_offset + 1 + qname[0]))
    rdata = b"".join(bytes([len(label)]) + label + parent for label in labels) + extra
    record = qname + struct.pack("!HHIH", rdtype, 1, 300, len(rdata)) + rdata
    return header + question + record


def extended_rcode(query: dns.message.Message, rcode: int) -> bytes:
    reply = dns.message.make_response(query)
    reply.use_edns(0, 0, 1232)
    reply.set_rcode(rcode)  # the upper bits go into the OPT record
    return reply.to_wire()


def truncated_over_tcp_too(query: dns.message.Message, transport: str) -> bytes:
    """TC over UDP (nothing), and over TCP a partial answer that says so."""
    reply = dns.message.make_response(query)
    if transport == "tcp":
        name = query.question[0].name
        reply.answer.append(dns.rrset.from_text(name, 300, "IN", "A", GOOD))
    reply.flags |= dns.flags.TC
    return reply.to_wire()


def with_stranger(query: dns.message.Message) -> bytes:
    """The answer, and an A record for a name nobody asked about."""
    reply = dns.message.from_wire(answer_a(query, [GOOD]))
    reply.answer.append(dns.rrset.from_text("victim.example.", 86400, "IN", "A", EVIL))
    return reply.to_wire()


def respond(query: dns.message.Message, transport: str) -> bytes:
    kind = query.question[0].name.labels[0].lower()
    if kind == b"mb":
        return names_in_rdata(query, 7, b"mail")
    if kind == b"rp":
        return names_in_rdata(query, 17, b"admin", b"info")
    if kind == b"rp-long":  # an RP with an octet after its two names
        return names_in_rdata(query, 17, b"admin", b"info", extra=b"\x00")
    if kind == b"badcookie":
        return extended_rcode(query, BADCOOKIE)
    if kind.startswith(b"tc-tcp"):
        return truncated_over_tcp_too(query, transport)
    if kind == b"stranger":
        return with_stranger(query)
    return answer_a(query, [GOOD])


class Wire:
    def __init__(self, server: ConsulDNS, fake: FakeUpstream) -> None:
        self.server = server
        self.fake = fake

    def asked(self, name: str) -> list[str]:
        """The transports the upstream was asked `name` over."""
        return [r.transport for r in self.fake.received if r.name == name]

    def dig(self, *args: str) -> str:
        need("dig", "bind9-dnsutils")
        out = subprocess.run(["dig", "-p", str(self.server.port), f"@{self.server.host}",
                              "+time=3", "+tries=1", *args],
                             capture_output=True, text=True, timeout=10)
        return out.stdout


@pytest.fixture(scope="module")
def wire(tmp_path_factory) -> Iterator[Wire]:
    fake = FakeUpstream(respond)
    server = None
    try:
        server = start_consuldns(tmp_path_factory.mktemp("wire"), consul=fake,
                                 upstreams=[fake])
        yield Wire(server, fake)
    finally:
        if server is not None:
            server.stop()
        fake.stop()


# ---------------------------------------------------------------- names inside rdata


def test_dig_reads_a_compressed_mb_name_in_full_and_from_the_cache_too(wire):
    for _ in range(2):
        assert wire.dig("+short", "mb.wire.test", "MB").split() == ["mail.wire.test."]
    assert wire.asked("mb.wire.test.") == ["udp"]  # the second answer was a cache hit


def test_a_compressed_rp_reaches_dnspython_readable(wire):
    reply = ask(wire.server, "rp.wire.test", "RP")
    assert reply.answer[0][0].to_text() == "admin.wire.test. info.wire.test."


def test_rdata_longer_than_its_type_is_servfail_and_never_cached(wire):
    for _ in range(2):
        assert ask(wire.server, "rp-long.wire.test", "RP").rcode() == dns.rcode.SERVFAIL
    assert wire.asked("rp-long.wire.test.") == ["udp", "udp"]


# ---------------------------------------------------------------- extended rcodes


def test_an_extended_rcode_is_servfail_for_a_client_without_edns(wire):
    assert "status: SERVFAIL" in wire.dig("+noedns", "badcookie.wire.test")


def test_an_extended_rcode_reaches_a_client_with_edns(wire):
    reply = ask(wire.server, "badcookie.wire.test", edns=0)
    assert reply.rcode() == BADCOOKIE and reply.edns == 0


# ---------------------------------------------------------------- truncation over TCP


@pytest.mark.parametrize("tcp", [False, True], ids=["udp-client", "tcp-client"])
def test_a_truncated_tcp_reply_is_servfail_and_never_cached(wire, tcp):
    name = f"tc-tcp-{'t' if tcp else 'u'}.wire.test"
    for _ in range(2):
        reply = ask(wire.server, name, tcp=tcp)
        assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer
    assert wire.asked(name + ".") == ["udp", "tcp", "udp", "tcp"]


# ---------------------------------------------------------------- scrubbing


def test_an_answer_record_for_another_name_never_reaches_the_client(wire):
    for _ in range(2):  # the miss, then the cache hit
        out = wire.dig("+noall", "+answer", "stranger.wire.test")
        assert "victim.example." not in out and EVIL not in out
        assert GOOD in out


# ---------------------------------------------------------------- FORMERR with OPT


def test_formerr_to_a_query_with_two_questions_and_opt_carries_opt(wire):
    question = dns.message.make_query("a.wire.test", "A").question[0].name.to_wire()
    question += struct.pack("!HH", 1, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, 4096, 0x8000, 0)  # OPT with DO
    data = struct.pack("!HHHHHH", 77, 0x0100, 2, 0, 0, 1) + question * 2 + opt
    reply = dns.message.from_wire(ask_raw(wire.server, data))
    assert reply.id == 77 and reply.rcode() == dns.rcode.FORMERR
    assert reply.edns == 0 and reply.ednsflags & dns.flags.DO
    assert addresses(ask(wire.server, "a.wire.test")) == [GOOD]  # and nothing else broke
