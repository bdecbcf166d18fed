"""Coverage-guided fuzzing (atheris, libFuzzer) of the parse and shape functions.

Run by tests/fuzz/test_atheris.py with a bounded number of runs; by hand, for longer:

    python -m tests.fuzz.atheris_target -runs=1000000 CORPUS_DIR

The first input byte picks the target, the rest is the message:
  0  wire.parse_query; FORMERR replies and policy replies must be readable
  1  wire.parse_reply; what it accepts, template.render + answer.build must turn into a
     reply that consuldns and dnspython both read, within the size asked
  2  Handler.answer_now, the synchronous path of every packet a client sends
Anything else than the functions' own errors is a finding (libFuzzer saves the input).
"""

from __future__ import annotations

import random
import sys

import atheris
import dns.exception
import dns.message

with atheris.instrument_imports(include=["consuldns"]):
    from consuldns.dns import shape as answer
    from consuldns.dns import wire
    from consuldns.serve.cache import Cache
    from consuldns.errors import FormatError, MalformedPacket
    from consuldns.serve.handler import Handler, Options
    from consuldns.serve.router import Route, Router
    from consuldns.dns.template import render


class _NoGroup:
    async def resolve(self, question, deadline):
        raise AssertionError("answer_now must not ask upstream")


_group = _NoGroup()
_HANDLER = Handler(Cache(1000),
                   Options(Router([Route("consul.", _group, is_agent=True)], Route(".", _group))),
                   rng=random.Random(0))
_RNG = random.Random(0)


def fuzz_query(data: bytes) -> None:
    try:
        query = wire.parse_query(data)
    except MalformedPacket:
        return
    except FormatError as exc:
        dns.message.from_wire(wire.error_reply(data, None, exc.rcode))
        return
    if query.question_end > len(data) or len(query.qname) > 255:
        raise AssertionError("question outside the message")
    reply = wire.error_reply(data, query, wire.REFUSED)
    if reply[:2] != data[:2]:
        raise AssertionError("reply ID differs")
    wire.parse_reply(reply)


def fuzz_reply(data: bytes) -> None:
    try:
        reply = wire.parse_reply(data)
    except MalformedPacket:
        return
    readable = _dnspython_reads(data)
    template = render(reply, reply.qname, [r.ttl for r in reply.records], shuffle_srv=True)
    query = wire.parse_query(wire.build_query(0x1234, reply.qname, reply.qtype, reply.qclass,
                                              edns_size=1232 if reply.has_opt else 0))
    for limit in (0, 512, 1232):
        out = answer.build(template, template.body, query, limit, max_udp=1232, rng=_RNG)
        if limit and len(out) > limit and 16 + len(query.qname) + 11 <= limit:
            raise AssertionError(f"{len(out)} bytes for a {limit}-byte client")
        again = wire.parse_reply(out)
        if again.id != 0x1234 or again.qname != query.qname:
            raise AssertionError("ID or question changed")
        if readable:  # what another implementation read from upstream, it reads from us
            dns.message.from_wire(out)


def _dnspython_reads(data: bytes) -> bool:
    """Opaque rdata (RFC 3597) is passed on as it came: only a reply dnspython reads must
    stay readable. Address records are checked by consuldns itself (wire.ADDRESS_SIZES)."""
    try:
        dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError):
        return False
    return True


def fuzz_handler(data: bytes) -> None:
    for tcp in (False, True):
        result = _HANDLER.answer_now(data, tcp)
        if isinstance(result, bytes) and result:
            message = dns.message.from_wire(result)
            if message.id != int.from_bytes(data[:2], "big"):
                raise AssertionError("reply ID differs")


TARGETS = (fuzz_query, fuzz_reply, fuzz_handler)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    TARGETS[data[0] % len(TARGETS)](data[1:])


def seeds() -> list[bytes]:
    """Valid messages of each kind, prefixed with their target byte."""
    import dns.rrset

    out = []
    for name, rdtype, edns in (("web.service.consul", "A", -1), ("Www.Example.Test", "AAAA", 0),
                               ("_web._tcp.service.consul", "SRV", 0), ("x.test", "ANY", -1),
                               ("version.bind", "TXT", -1)):
        query = dns.message.make_query(name, rdtype, use_edns=edns, want_dnssec=edns == 0)
        out.append(b"\x00" + query.to_wire())
        out.append(b"\x02" + query.to_wire())
    query = dns.message.make_query("web.service.consul", "A")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("web.service.consul.", 0, "IN", "A",
                                            *(f"10.0.0.{i}" for i in range(1, 9))))
    reply.additional.append(dns.rrset.from_text("web.service.consul.", 0, "IN", "TXT", '"a=b"'))
    out.append(b"\x01" + reply.to_wire())
    query = dns.message.make_query("alias.example.test", "A", use_edns=0)
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("alias.example.test.", 300, "IN", "CNAME",
                                            "www.example.test."))
    reply.answer.append(dns.rrset.from_text("www.example.test.", 300, "IN", "A", "192.0.2.1"))
    reply.authority.append(dns.rrset.from_text("example.test.", 300, "IN", "NS",
                                               "ns.example.test."))
    out.append(b"\x01" + reply.to_wire())
    query = dns.message.make_query("web.service.consul", "SRV")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("web.service.consul.", 0, "IN", "SRV",
                                            "1 1 8080 node1.node.dc1.consul.",
                                            "1 1 8080 node2.node.dc1.consul."))
    reply.additional.append(dns.rrset.from_text("node1.node.dc1.consul.", 0, "IN", "A",
                                                "10.0.0.1"))
    out.append(b"\x01" + reply.to_wire())
    query = dns.message.make_query("nx.example.test", "MX")
    reply = dns.message.make_response(query)
    reply.set_rcode(3)
    reply.authority.append(dns.rrset.from_text(
        "example.test.", 60, "IN", "SOA", "ns.example.test. h.example.test. 1 2 3 4 60"))
    out.append(b"\x01" + reply.to_wire())
    return out


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
