"""Small dnspython helpers shared by the harness tests."""

from __future__ import annotations

import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def ask(server, name: str, rdtype: str = "A", *, tcp: bool = False, edns: bool = True,
        timeout: float = 2.0) -> dns.message.Message:
    """One query to a harness server (anything with .host and .port)."""
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, server.host, port=server.port, timeout=timeout)


def values(rrset: dns.rrset.RRset) -> set[str]:
    return {rdata.to_text() for rdata in rrset}


def answer_rrset(reply: dns.message.Message, name: str, rdtype: str) -> dns.rrset.RRset:
    return reply.find_rrset(reply.answer, dns.name.from_text(name), dns.rdataclass.IN,
                            dns.rdatatype.from_text(rdtype))
