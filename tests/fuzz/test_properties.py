"""Property-based fuzzing (hypothesis) of the parse and shape functions (issue 7).

- wire.parse_query and wire.parse_reply read exactly what was written, and on anything else
  raise only their own errors (MalformedPacket, FormatError);
- template.render + answer.build give every client a message another implementation
  (dnspython) reads, with the records it was given, the forwarder's flags, the client's ID
  and question, within the client's size with TC set exactly when records were cut;
- Handler.answer_now (the synchronous path: bad input, policy answers) never raises and every
  reply it makes is readable.
"""

from __future__ import annotations

import collections
import random

import dns.exception
import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consuldns.dns import shape as answer
from consuldns.dns import wire
from consuldns.serve.cache import Cache
from consuldns.errors import FormatError, MalformedPacket
from consuldns.serve.handler import Handler, Options
from consuldns.serve.router import Route, Router
from consuldns.dns.template import render
from tests.fuzz import messages as m

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Whole replies are slower to draw; the coverage-guided run (test_atheris.py) goes wider.
FUZZ_REPLIES = settings(FUZZ, max_examples=120)


def parsed_records(reply: wire.Reply) -> list[m.Rec]:
    return [m.Rec(r.section, r.owner, r.rtype, r.rclass, r.ttl, r.rdata) for r in reply.records]


# ---------------------------------------------------------------- parse_query


@FUZZ
@given(m.queries(label=m.any_label))
def test_parse_query_reads_what_was_written(case):
    data, fields = case
    query = wire.parse_query(data)
    for key, value in fields.items():
        assert getattr(query, key) == value, key
    assert query.question_end == 12 + len(fields["qname"]) + 4
    bits = (2 if query.do else 0) | (1 if fields["flags"] & wire.CD else 0)
    assert query.key == fields["qname"].lower() + data[query.question_end - 4:
                                                       query.question_end] + bytes([bits])


@FUZZ
@given(st.data())
def test_parse_query_on_mutated_and_random_input_raises_only_its_own_errors(data):
    base, _ = data.draw(m.queries())
    raw = data.draw(st.one_of(m.mutated(base), st.binary(max_size=600)))
    try:
        query = wire.parse_query(raw)
    except (MalformedPacket, FormatError) as exc:
        if isinstance(exc, FormatError):
            # Answered with FORMERR/NOTIMP: the reply must be readable, with the client's ID.
            reply = dns.message.from_wire(wire.error_reply(raw, None, exc.rcode))
            assert reply.id == int.from_bytes(raw[:2], "big")
            assert reply.rcode() == exc.rcode
        return
    assert raw[query.question_end - 4:query.question_end] == wire.TYPE_CLASS.pack(
        query.qtype, query.qclass)
    assert raw[12:12 + len(query.qname)] == query.qname and len(query.qname) <= 255
    assert query.key.startswith(query.qname.lower())
    for rcode in (wire.REFUSED, wire.NOTIMP, wire.SERVFAIL, wire.BADVERS):
        reply = wire.error_reply(raw, query, rcode)
        assert reply[:2] == raw[:2] and reply[2] & 0x80
        assert wire.parse_reply(reply).rcode == (rcode if query.has_opt else rcode & 0xF)


# ---------------------------------------------------------------- parse_reply


@st.composite
def replies(draw, compress_srv: bool = False):
    qname = draw(m.names())
    qtype = draw(st.sampled_from([m.A, m.AAAA, m.SRV, m.TXT, m.MX, m.PTR, m.CNAME]))
    recs = draw(m.records(qname, qtype))
    flags = 0x8000 | (draw(st.integers(0, 0xFFFF)) & 0x07F0) | draw(
        st.sampled_from([0, 0, 2, 3, 5]))
    opt = draw(st.none() | st.tuples(st.integers(512, 4096), st.integers(0, 3)))
    qid = draw(st.integers(0, 0xFFFF))
    raw, expected = m.encode_reply(qid, flags, qname, qtype, 1, recs,
                                   compress=draw(st.booleans()), opt=opt,
                                   compress_srv=compress_srv)
    return raw, expected, (qid, flags, qname, qtype, opt)


@FUZZ_REPLIES
@given(replies(compress_srv=True))
def test_parse_reply_reads_every_record_exactly(case):
    raw, expected, (qid, flags, qname, qtype, opt) = case
    reply = wire.parse_reply(raw)
    assert (reply.id, reply.flags, reply.qname, reply.qtype) == (qid, flags, qname, qtype)
    assert parsed_records(reply) == expected
    assert reply.has_opt == (opt is not None)
    assert reply.rcode == (flags & 0xF) | ((opt[1] << 4) if opt else 0)


@FUZZ_REPLIES
@given(st.data())
def test_parse_reply_on_mutated_input_raises_only_malformed(data):
    raw, _, _ = data.draw(replies())
    broken = data.draw(m.mutated(raw))
    try:
        reply = wire.parse_reply(broken)
    except MalformedPacket:
        return
    for record in reply.records:  # whatever was accepted is well-formed enough to render
        assert record.ttl < 2**31
        layout = wire.NAME_LAYOUTS.get(record.rtype)
        if layout is not None:
            _check_plain_names(record.rdata, layout)
    template = render(reply, reply.qname, [r.ttl for r in reply.records])
    query = wire.parse_query(wire.build_query(1, reply.qname, reply.qtype, reply.qclass))
    out = answer.build(template, template.body, query, 512, max_udp=1232,
                       rng=random.Random(0))
    again = wire.parse_reply(out)
    assert again.id == 1 and again.qname == reply.qname
    try:
        dns.message.from_wire(broken)
    except (dns.exception.DNSException, ValueError):
        return  # opaque rdata is passed on as it came (RFC 3597)
    dns.message.from_wire(out)  # what another implementation read from upstream, it reads


@FUZZ
@given(st.sampled_from([m.A, m.AAAA]), st.integers(0, 40), st.booleans())
def test_address_records_of_the_wrong_length_are_never_accepted(rtype, length, compress):
    """nginx rejects a whole response with an A record that is not 4 octets ("invalid A
    record"); glibc skips it. A forwarder that cached one would break the name for its TTL."""
    right = 4 if rtype == m.A else 16
    qname = m.wire_name([b"web", b"service", b"consul"])
    records = [(0, qname, rtype, 60, (bytes(length),))]
    raw, _ = m.encode_reply(7, 0x8180, qname, rtype, 1, records, compress=compress)
    if length == right:
        assert wire.parse_reply(raw).records[0].rdata == bytes(length)
    else:
        with pytest.raises(MalformedPacket):
            wire.parse_reply(raw)


def _check_plain_names(rdata: bytes, layout) -> None:
    fields = wire.read_rdata(rdata, 0, len(rdata), layout)  # the layout fills it exactly
    assert b"".join(value for _, value in fields) == rdata  # and no pointer is left inside


# ---------------------------------------------------------------- render + build


@st.composite
def shaping_cases(draw):
    raw, expected, (_, _, qname, qtype, _) = draw(replies())
    reply = wire.parse_reply(raw)
    client_qname = m.recase(draw, qname)
    qflags = 0x0100 * draw(st.booleans()) | 0x0010 * draw(st.booleans()) | (
        0x0020 * draw(st.booleans()))
    edns = draw(st.none() | st.tuples(st.integers(0, 4096), st.booleans()))
    query_raw = wire.HEADER.pack(draw(st.integers(0, 0xFFFF)), qflags, 1, 0, 0,
                                 1 if edns else 0) + client_qname + wire.TYPE_CLASS.pack(qtype, 1)
    if edns:
        query_raw += wire.opt_record(edns[0], do=edns[1])
    query = wire.parse_query(query_raw)
    ttls = [draw(st.integers(0, 2**31 - 1)) for _ in reply.records]
    max_udp = draw(st.sampled_from([512, 1232, 4096]))
    limit = draw(st.sampled_from([0, answer.udp_limit(query, max_udp), 512,
                                  draw(st.integers(12, 4096))]))
    shuffle = draw(st.booleans())
    seed = draw(st.integers(0, 2**32))
    return reply, expected, query, ttls, max_udp, limit, shuffle, seed


@FUZZ_REPLIES
@given(shaping_cases())
def test_build_gives_clients_what_they_may_read(case):
    reply, _, query, ttls, max_udp, limit, shuffle, seed = case
    template = render(reply, query.qname, ttls, shuffle_srv=True)
    rng = random.Random(seed) if shuffle else None
    out = answer.build(template, template.body_with_ttls(ttls), query, limit, max_udp=max_udp,
                       rng=rng)
    message = dns.message.from_wire(out)  # another implementation reads it
    ours = wire.parse_reply(out)
    flags = wire.U16.unpack_from(out, 2)[0]
    # Header: the client's ID and question, forwarder flags (nginx's mask when no AD asked).
    assert message.id == query.id
    assert out[12:12 + len(query.qname)] == query.qname
    assert flags & wire.QR and flags & wire.RA and not flags & (wire.AA | wire.Z)
    assert flags & wire.OPCODE_MASK == 0
    assert flags & (wire.RD | wire.CD) == query.flags & (wire.RD | wire.CD)
    if reply.rcode > 0xF and not query.has_opt:
        # An extended rcode cannot reach a client without EDNS: a bare SERVFAIL.
        assert ours.rcode == wire.SERVFAIL and not ours.records and not ours.has_opt
        return
    asked_ad = query.do or query.flags & wire.AD
    assert bool(flags & wire.AD) == bool(reply.flags & wire.AD and asked_ad)
    assert ours.has_opt == query.has_opt
    assert ours.rcode == reply.rcode
    if query.has_opt:
        assert message.payload == max_udp
    # Size and truncation.
    minimum = 12 + len(query.qname) + 4 + (11 if query.has_opt else 0)
    if limit and minimum <= limit:
        assert len(out) <= limit
    given_records = [m.Rec(r.section, r.owner, r.rtype, r.rclass, t, r.rdata)
                     for r, t in zip(reply.records, ttls)]
    # Names may come back in the client's spelling of the question (compression points at
    # it): compare them case-insensitively.
    given_records = [_folded(r) for r in given_records]
    got = [_folded(m.Rec(r.section, r.owner, r.rtype, r.rclass, r.ttl, r.rdata))
           for r in ours.records]
    got_plain = collections.Counter(got)
    assert not got_plain - collections.Counter(given_records)  # nothing invented
    answers_and_authority = sum(1 for r in given_records if r.section < 2)
    kept_main = sum(1 for r in got if r.section < 2)
    assert bool(flags & wire.TC) == (kept_main < answers_and_authority)
    if not limit or len(out) <= limit and not flags & wire.TC and len(got) == len(given_records):
        assert got_plain == collections.Counter(given_records)
    if not flags & wire.TC and not limit:
        _assert_order_kept_outside_runs(got, given_records, template.runs)
    if rng is None and limit and len(got) < len(given_records):
        # As many whole records as fit: the next one would not have.
        nxt = template.split(template.body_with_ttls(ttls))[len(got)]
        assert len(out) + len(nxt) > limit


def _assert_order_kept_outside_runs(got, given_records, runs) -> None:
    in_run = {i for start, end in runs for i in range(start, end)}
    for i, record in enumerate(given_records):
        if i not in in_run:
            assert got[i] == record, i
    for start, end in runs:
        assert collections.Counter(got[start:end]) == collections.Counter(
            given_records[start:end])


def _folded(record: m.Rec) -> m.Rec:
    return m.Rec(record.section, record.owner.lower(), record.rtype, record.rclass, record.ttl,
                 record.rdata.lower())


# ---------------------------------------------------------------- the synchronous path


class _NoGroup:
    async def resolve(self, question, deadline):  # never reached by answer_now
        raise AssertionError("answer_now must not ask upstream")


def _handler() -> Handler:
    group = _NoGroup()
    router = Router([Route("consul.", group, is_agent=True)], Route(".", group))
    return Handler(Cache(100), Options(router), rng=random.Random(0))


@FUZZ
@given(st.data())
def test_answer_now_never_raises_and_every_reply_is_readable(data):
    base, _ = data.draw(m.queries())
    raw = data.draw(st.one_of(st.just(base), m.mutated(base), st.binary(max_size=300)))
    handler = _handler()
    for tcp in (False, True):
        result = handler.answer_now(raw, tcp)
        if isinstance(result, wire.Query):
            continue  # would go upstream
        if result == b"":
            assert len(raw) < 12 or raw[2] & 0x80 or _unreadable(raw)
            continue
        message = dns.message.from_wire(result)
        assert message.id == int.from_bytes(raw[:2], "big")
        assert message.flags & 0x8000
        assert not tcp and len(result) <= 1232 or tcp


def _unreadable(raw: bytes) -> bool:
    try:
        wire.parse_query(raw)
    except MalformedPacket:
        return True
    except FormatError:
        return False
    return False


@pytest.mark.parametrize("size", [0, 1, 11])
def test_short_packets_are_malformed(size):
    with pytest.raises(MalformedPacket):
        wire.parse_query(b"\x00" * size)
    with pytest.raises(MalformedPacket):
        wire.parse_reply(b"\x80" * size)
