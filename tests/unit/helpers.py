"""Build messages with dnspython for unit tests (the product itself never uses it on the path)."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset


def query_bytes(name: str, rdtype: str = "A", *, qid: int = 4242, edns: int = -1,
                payload: int = 1232, want_dnssec: bool = False, flags: int | None = None,
                options=None) -> bytes:
    message = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload,
                                     want_dnssec=want_dnssec, options=options)
    message.id = qid
    if flags is not None:
        message.flags = flags
    return message.to_wire()


def reply_bytes(name: str, rdtype: str, answers: list[str] = (), *, ttl: int = 300,
                rcode: int = dns.rcode.NOERROR, authority: list[tuple[str, int, str, str]] = (),
                additional: list[tuple[str, int, str, str]] = (), qid: int = 4242,
                flags: int = dns.flags.QR | dns.flags.RD | dns.flags.RA, edns: int = -1,
                extra_answers: list[tuple[str, int, str, str]] = ()) -> bytes:
    """A reply; answers are rdata texts for (name, rdtype); extra entries are full tuples."""
    query = dns.message.make_query(name, rdtype, use_edns=edns)
    query.id = qid
    reply = dns.message.make_response(query)
    reply.flags = flags
    reply.set_rcode(rcode)
    for owner, rr_ttl, rr_type, text in extra_answers:
        reply.answer.append(dns.rrset.from_text(_abs(owner), rr_ttl, "IN", rr_type, text))
    if answers:
        reply.answer.append(dns.rrset.from_text(_abs(name), ttl, "IN", rdtype, *answers))
    for owner, rr_ttl, rr_type, text in authority:
        reply.authority.append(dns.rrset.from_text(_abs(owner), rr_ttl, "IN", rr_type, text))
    for owner, rr_ttl, rr_type, text in additional:
        reply.additional.append(dns.rrset.from_text(_abs(owner), rr_ttl, "IN", rr_type, text))
    return reply.to_wire()


SOA_TEXT = "ns.example.test. hostmaster.example.test. 1 3600 600 86400 60"



def _abs(name: str) -> str:
    return name if name.endswith(".") else name + "."
