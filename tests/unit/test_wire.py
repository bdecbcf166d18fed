"""The wire scanner against messages built by dnspython."""

import struct

import dns.flags
import dns.message
import dns.rcode
import pytest

from consuldns.dns import wire
from consuldns.errors import FormatError, MalformedPacket
from tests.unit.helpers import SOA_TEXT, query_bytes, reply_bytes


def test_parse_query_reads_question_and_keeps_case():
    query = wire.parse_query(query_bytes("Web.Service.CONSUL.", "AAAA", qid=7))
    assert query.id == 7
    assert query.qname == b"\x03Web\x07Service\x06CONSUL\x00"
    assert query.qtype == 28 and query.qclass == 1
    assert not query.has_opt


def test_cache_key_is_case_folded_and_separates_do_and_cd():
    plain = wire.parse_query(query_bytes("WWW.example.test"))
    lower = wire.parse_query(query_bytes("www.example.test"))
    dnssec = wire.parse_query(query_bytes("www.example.test", want_dnssec=True, edns=0))
    checking = wire.parse_query(query_bytes(
        "www.example.test", flags=dns.flags.RD | dns.flags.CD))
    assert plain.key == lower.key
    assert len({lower.key, dnssec.key, checking.key}) == 3


def test_cache_key_does_not_fold_the_type_bytes():
    # QTYPE 65 is 0x0041 ('A'): folding it would collide with type 97 (0x0061).
    https = wire.parse_query(query_bytes("x.example.test", "TYPE65"))
    other = wire.parse_query(query_bytes("x.example.test", "TYPE97"))
    assert https.key != other.key


def test_edns_fields_are_read_even_behind_cookies():
    data = query_bytes("www.example.test", edns=0, payload=4000, want_dnssec=True,
                       options=[dns.edns.GenericOption(10, b"12345678")])
    query = wire.parse_query(data)
    assert query.has_opt and query.udp_size == 4000 and query.do and query.edns_version == 0
    assert query.key == wire.parse_query(query_bytes("www.example.test", edns=0,
                                                     want_dnssec=True)).key


def test_edns_size_below_512_counts_as_512():
    assert wire.parse_query(query_bytes("a.test", edns=0, payload=100)).udp_size == 512


@pytest.mark.parametrize("data,error", [
    (b"\x00" * 11, MalformedPacket),
    (struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01", MalformedPacket),
    (struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2, FormatError),
    (struct.pack("!HHHHHH", 1, 0, 0, 0, 0, 0), FormatError),
    (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x05abc", FormatError),
    (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", FormatError),
    (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x01a\x00\x00", FormatError),
    (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63
     + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x00\x00\x01\x00\x01", FormatError),
], ids=["short", "response", "two-questions", "no-question", "name-past-end", "pointer",
        "short-type", "name-too-long"])
def test_bad_queries(data, error):
    with pytest.raises(error):
        wire.parse_query(data)


def test_other_opcodes_are_not_implemented():
    data = bytearray(query_bytes("a.test"))
    data[2] |= 0x28  # opcode 5 (UPDATE)
    with pytest.raises(FormatError) as caught:
        wire.parse_query(bytes(data))
    assert caught.value.rcode == wire.NOTIMP


def test_two_opt_records_are_a_format_error():
    data = bytearray(query_bytes("a.test", edns=0))
    data[11] = 2
    data += wire.opt_record(1232)
    with pytest.raises(FormatError):
        wire.parse_query(bytes(data))


def test_parse_reply_decompresses_names_in_rdata():
    data = reply_bytes("alias.example.test", "CNAME", ["www.example.test."],
                       authority=[("example.test", 300, "SOA", SOA_TEXT)])
    reply = wire.parse_reply(data)
    assert reply.records[0].rdata == b"\x03www\x07example\x04test\x00"
    soa = reply.records[1]
    assert soa.section == 1 and wire.soa_minimum(soa.rdata) == 60
    assert wire.name_to_text(reply.qname) == "alias.example.test."


def test_parse_reply_keeps_opt_apart_and_reads_extended_rcode():
    message = dns.message.from_wire(reply_bytes("a.test", "A", ["192.0.2.1"], edns=0))
    message.use_edns(0, 0, 1232)
    message.set_rcode(16)  # BADVERS: upper bits in the OPT TTL
    reply = wire.parse_reply(message.to_wire())
    assert reply.has_opt and reply.rcode == 16
    assert all(r.rtype != wire.OPT for r in reply.records)


@pytest.mark.parametrize("data", [
    b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01\xc0\x20",
    (b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01\xc0\x13"
     b"\x00\x01\x00\x01\x00\x00\x00\x01\x00\x04\x01\x02\x03\x04"),
    (b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01\xc0\x0c"
     b"\x00\x01\x00\x01\x00\x00\x00\x01\x00\x09\x01\x02\x03\x04"),
], ids=["forward-pointer", "pointer-loop", "rdata-past-end"])
def test_untrustworthy_replies(data):
    with pytest.raises(MalformedPacket):
        wire.parse_reply(data)


def test_error_reply_echoes_question_and_opt():
    data = query_bytes("Mixed.Case.test", edns=0, qid=99)
    reply = dns.message.from_wire(wire.error_reply(data, wire.parse_query(data), wire.SERVFAIL))
    assert reply.id == 99 and reply.rcode() == 2 and reply.edns == 0
    assert reply.question[0].name.to_text() == "Mixed.Case.test."
    assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA


def test_badvers_reply_carries_extended_rcode():
    data = query_bytes("a.test", edns=1)
    reply = dns.message.from_wire(wire.error_reply(data, wire.parse_query(data), wire.BADVERS))
    assert reply.rcode() == 16


def test_text_and_wire_names_round_trip():
    assert wire.name_to_text(wire.text_to_name("Web.Service.consul")) == "Web.Service.consul."
    assert wire.text_to_name(".") == b"\x00"


def formerr_to(data: bytes) -> dns.message.Message:
    """The FORMERR consuldns answers a query that parse_query rejects."""
    with pytest.raises(FormatError) as caught:
        wire.parse_query(data)
    return dns.message.from_wire(wire.error_reply(data, None, caught.value.rcode))


def with_counts(data: bytes, qdcount: int, ancount: int = 0) -> bytes:
    return data[:4] + struct.pack("!HH", qdcount, ancount) + data[8:]


QUESTION = b"\x01a\x04test\x00\x00\x01\x00\x01"
RECORD = b"\x01a\x04test\x00" + struct.pack("!HHIH", 1, 1, 60, 4) + b"\xc0\x00\x02\x01"


@pytest.mark.parametrize("build", [
    lambda opt: struct.pack("!HHHHHH", 7, 0, 0, 0, 0, 1) + opt,
    lambda opt: struct.pack("!HHHHHH", 7, 0, 2, 0, 0, 1) + QUESTION * 2 + opt,
    lambda opt: struct.pack("!HHHHHH", 7, 0, 1, 1, 0, 1) + QUESTION + RECORD + opt,
    lambda opt: struct.pack("!HHHHHH", 7, 0, 1, 0, 1, 1) + QUESTION + RECORD + opt,
], ids=["no-question", "two-questions", "answer-record", "authority-record"])
def test_formerr_to_a_query_with_opt_carries_opt(build):
    reply = formerr_to(build(wire.opt_record(4000, do=True)))
    assert reply.rcode() == dns.rcode.FORMERR and reply.id == 7
    assert reply.edns == 0 and reply.payload == 1232 and reply.ednsflags & dns.flags.DO


@pytest.mark.parametrize("data", [
    struct.pack("!HHHHHH", 7, 0, 2, 0, 0, 0) + QUESTION * 2,  # no OPT
    struct.pack("!HHHHHH", 7, 0, 1, 0, 0, 2) + QUESTION + wire.opt_record(1232) * 2,
    struct.pack("!HHHHHH", 7, 0, 2, 0, 0, 1) + QUESTION + wire.opt_record(1232),  # unreadable
], ids=["no-opt", "two-opts", "opt-unreachable"])
def test_formerr_without_one_readable_opt_has_none(data):
    reply = formerr_to(data)
    assert reply.rcode() == dns.rcode.FORMERR and reply.edns == -1


def test_notimp_to_another_opcode_with_opt_carries_opt():
    data = bytearray(query_bytes("a.test", edns=0))
    data[2] |= 0x28  # opcode 5 (UPDATE)
    reply = formerr_to(bytes(data))
    assert reply.rcode() == dns.rcode.NOTIMP and reply.edns == 0
