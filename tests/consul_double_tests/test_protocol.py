"""Checklist 1, 2, 3 and 12: transport, zones, header bits, malformed and odd queries."""

from __future__ import annotations

import socket
import struct

import dns.message
import dns.opcode

from tests.consul_double_tests.dnsclient import (
    ask,
    ask_wire,
    flags,
    make,
    rcode,
    rdatas,
    records,
    send,
    soa_only,
)


def raw_query(name: str = "web.service.consul", qtype: int = 1, *, qdcount: int = 1,
              opcode: int = 0, qr: bool = False, ident: int = 0x1234, rd: bool = True) -> bytes:
    """A hand-built query whose header may lie about its question count."""
    bits = (0x8000 if qr else 0) | (opcode << 11) | (0x0100 if rd else 0)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    question += struct.pack("!HH", qtype, 1)
    body = question * max(qdcount, 0)
    return struct.pack("!6H", ident, bits, qdcount, 0, 0, 0) + body


def test_udp_and_tcp_answer_on_the_same_port_from_one_catalog(double):
    udp = ask(double, "web.service.consul", "SRV")
    tcp = ask(double, "web.service.consul", "SRV", tcp=True)
    assert rcode(udp) == rcode(tcp) == "NOERROR"
    assert sorted(rdatas(udp.answer)) == sorted(rdatas(tcp.answer))
    assert len(udp.answer[0]) == 3


def test_many_concurrent_udp_queries_are_all_answered(double):
    ids = list(range(1, 301))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(3)
        for ident in ids:
            sock.sendto(raw_query(ident=ident), (double.host, double.port))
        seen = set()
        while len(seen) < len(ids):
            reply = dns.message.from_wire(sock.recv(65535))
            assert rcode(reply) == "NOERROR" and len(reply.answer[0]) == 3
            seen.add(reply.id)
    assert seen == set(ids)


def test_tcp_answers_pipelined_queries_in_order(double):
    with socket.create_connection((double.host, double.port), timeout=3) as sock:
        names = ["node1.node.consul", "node2.node.consul", "nope.node.consul"]
        for i, name in enumerate(names):
            wire = raw_query(name, ident=100 + i)
            sock.sendall(struct.pack("!H", len(wire)) + wire)
        replies = []
        stream = sock.makefile("rb")
        for _ in names:
            length = struct.unpack("!H", stream.read(2))[0]
            replies.append(dns.message.from_wire(stream.read(length)))
    assert [r.id for r in replies] == [100, 101, 102]
    assert [rcode(r) for r in replies] == ["NOERROR", "NOERROR", "NXDOMAIN"]


def test_header_copies_id_and_rd_sets_qr_and_aa_without_ra(double):
    for rd in (True, False):
        query = make("web.service.consul", rd=rd)
        reply = send(double, query)
        assert reply.id == query.id
        assert {"QR", "AA"} <= flags(reply)
        assert ("RD" in flags(reply)) == rd
        assert "RA" not in flags(reply)
        assert "AD" not in flags(reply)


def test_question_and_owner_names_keep_the_clients_case(double):
    reply = ask(double, "WeB.SeRvIcE.CoNsUl.")
    assert reply.question[0].name.to_text() == "WeB.SeRvIcE.CoNsUl."
    assert {r[0] for r in records(reply.answer)} == {"WeB.SeRvIcE.CoNsUl."}
    assert len(reply.answer[0]) == 3


def test_ra_is_set_only_when_recursors_are_configured(make_double):
    for profile in ("modern", "0.6.4"):
        with_recursors = make_double(profile, recursors=["127.0.0.1:9"])
        reply = ask(with_recursors, "web.service.consul")
        assert {"QR", "AA", "RA"} <= flags(reply)


def test_out_of_zone_without_recursors_is_refused_by_modern(modern):
    reply = ask(modern, "www.example.com", edns=1232)
    assert rcode(reply) == "REFUSED"
    assert not {"AA", "RA"} & flags(reply)
    assert reply.edns == -1  # no OPT on the mux's refusal
    assert reply.question[0].name.to_text() == "www.example.com."


def test_out_of_zone_without_recursors_is_servfail_in_064(legacy):
    reply = ask(legacy, "www.example.com", edns=1232)
    assert rcode(reply) == "SERVFAIL"
    assert not {"AA", "RA"} & flags(reply)
    assert reply.edns == -1


def test_zone_matching_is_label_wise_and_case_insensitive(double):
    assert rcode(ask(double, "web.service.CONSUL")) == "NOERROR"
    not_ours = ask(double, "web.service.notconsul")
    assert rcode(not_ours) in ("REFUSED", "SERVFAIL") and "AA" not in flags(not_ours)


def test_modern_rejects_more_than_one_question_with_formerr(modern):
    reply = dns.message.from_wire(ask_wire(modern, raw_query(qdcount=2)))
    assert rcode(reply) == "FORMERR"
    assert "QR" in flags(reply) and "AA" not in flags(reply)
    assert len(reply.question) == 0


def test_064_answers_the_first_of_two_questions(legacy):
    wire = ask_wire(legacy, raw_query(qdcount=2))
    reply = dns.message.from_wire(wire, question_only=True)
    assert reply.rcode() == 0 and struct.unpack("!H", wire[6:8])[0] == 3


def test_no_question_is_formerr_in_modern_and_servfail_in_064(modern, legacy):
    assert rcode(dns.message.from_wire(ask_wire(modern, raw_query(qdcount=0)))) == "FORMERR"
    assert rcode(dns.message.from_wire(ask_wire(legacy, raw_query(qdcount=0)))) == "SERVFAIL"


def test_modern_answers_other_opcodes_with_notimp(modern):
    reply = dns.message.from_wire(ask_wire(modern, raw_query(opcode=2)))  # STATUS
    assert rcode(reply) == "NOTIMP"
    assert reply.opcode() == dns.opcode.STATUS


def test_modern_ignores_responses(modern):
    assert ask_wire(modern, raw_query(qr=True), timeout=0.5) is None


def test_axfr_is_notimp_in_modern_and_a_plain_lookup_in_064(modern, legacy):
    reply = ask(modern, "web.service.consul", "AXFR", tcp=True)
    assert rcode(reply) == "NOTIMP" and not reply.answer
    old = ask(legacy, "web.service.consul", "AXFR", tcp=True)
    assert rcode(old) == "NOERROR" and not old.answer and soa_only(old)


def test_truncated_garbage_gets_formerr(double):
    wire = raw_query()[:-3]
    reply = dns.message.from_wire(ask_wire(double, wire))
    assert rcode(reply) == "FORMERR"


def test_packets_shorter_than_a_header_are_dropped(double):
    assert ask_wire(double, b"\x12\x34\x01", timeout=0.5) is None
