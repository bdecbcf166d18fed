"""Small dnspython helpers for talking to a double over UDP and TCP."""

from __future__ import annotations

import socket

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.e2e.client import ask_raw, read_frame, tcp_frame

TIMEOUT = 3.0


def make(name: str, qtype: str = "A", *, edns: int | None = None, rd: bool = True,
         options: list | None = None, dnssec: bool = False) -> dns.message.Message:
    """A query; edns is the advertised UDP size (None: no OPT at all)."""
    if edns is None:
        query = dns.message.make_query(name, qtype, use_edns=False)
    else:
        query = dns.message.make_query(name, qtype, use_edns=0, payload=edns, options=options,
                                       want_dnssec=dnssec)
    if not rd:
        query.flags &= ~dns.flags.RD
    return query


def send(double, query: dns.message.Message, *, tcp: bool = False) -> dns.message.Message:
    exchange = dns.query.tcp if tcp else dns.query.udp
    return exchange(query, double.host, port=double.port, timeout=TIMEOUT)


def ask(double, name: str, qtype: str = "A", *, tcp: bool = False, **kwargs) -> dns.message.Message:
    return send(double, make(name, qtype, **kwargs), tcp=tcp)


def ask_wire(double, wire: bytes, *, tcp: bool = False, timeout: float = TIMEOUT) -> bytes | None:
    """Send raw bytes; the raw reply, or None when nothing came back in time."""
    if not tcp:
        return ask_raw(double, wire, timeout)
    with socket.create_connection((double.host, double.port), timeout=timeout) as sock:
        sock.sendall(tcp_frame(wire))
        try:
            return read_frame(sock)
        except (TimeoutError, ConnectionError):
            return None


def rcode(message: dns.message.Message) -> str:
    return dns.rcode.to_text(message.rcode())


def flags(message: dns.message.Message) -> set[str]:
    return set(dns.flags.to_text(message.flags).split())


def records(section, rdtype: str | None = None) -> list:
    """(name, ttl, type, rdata text) for every RR of a section."""
    out = []
    for rrset in section:
        kind = dns.rdatatype.to_text(rrset.rdtype)
        if rdtype is None or kind == rdtype:
            out.extend((rrset.name.to_text(), rrset.ttl, kind, rd.to_text()) for rd in rrset)
    return out


def rdatas(section, rdtype: str | None = None) -> list[str]:
    return [r[3] for r in records(section, rdtype)]


def soa_only(message: dns.message.Message) -> bool:
    """Authority holds exactly one SOA (the RFC 2308 negative-answer shape)."""
    return [r[2] for r in records(message.authority)] == ["SOA"]
