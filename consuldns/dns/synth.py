"""Answers consuldns gives on its own, without asking anyone: the policy answers.

BADVERS for an unknown EDNS version, REFUSED for classes other than IN (CHAOS `version.bind`
and `id.server` when enabled), NOTIMP for zone transfers, one HINFO for ANY (RFC 8482), and
REFUSED for clients outside the allowed networks.
"""

from __future__ import annotations

import socket

from consuldns import __version__
from consuldns.dns import wire
from consuldns.errors import FormatError, MalformedPacket

ZONE_TRANSFER_TYPES = frozenset({251, 252})  # IXFR, AXFR
RFC8482_HINFO = b"\x07RFC8482\x00"  # HINFO "RFC8482" "" (RFC 8482 §4.2)
RFC8482_TTL = 3600
CHAOS_TEXTS = {
    wire.text_to_name(name): text
    for names, text in ((("version.bind", "version.server"), lambda: f"consuldns {__version__}"),
                        (("id.server", "hostname.bind"), socket.gethostname))
    for name in names
}


def policy_answer(data: bytes, query: wire.Query, max_udp: int, chaos: bool) -> bytes | None:
    """The reply to a query consuldns answers itself, else None."""
    if query.edns_version != 0:
        return wire.error_reply(data, query, wire.BADVERS, max_udp=max_udp)
    if query.qclass != wire.CLASS_IN:
        if chaos and query.qclass == wire.CLASS_CH:
            reply = chaos_answer(data, query, max_udp)
            if reply is not None:
                return reply
        return wire.error_reply(data, query, wire.REFUSED, max_udp=max_udp)
    if query.qtype in ZONE_TRANSFER_TYPES or query.qtype == wire.OPT:
        return wire.error_reply(data, query, wire.NOTIMP, max_udp=max_udp)
    if query.qtype == wire.ANY:
        return minimal_any(data, query, max_udp)
    return None


def chaos_answer(data: bytes, query: wire.Query, max_udp: int) -> bytes | None:
    """CHAOS TXT version.bind / id.server (and their aliases), as BIND and unbound answer
    them, for operators who check what is running; None for any other CHAOS question."""
    text = CHAOS_TEXTS.get(query.qname.lower())
    if text is None or query.qtype != wire.TXT:
        return None
    value = text().encode()[:255]
    rdata = bytes([len(value)]) + value
    record = b"\xc0\x0c" + wire.RR_FIXED.pack(wire.TXT, wire.CLASS_CH, 0, len(rdata)) + rdata
    return synthesised(data, query, record, max_udp)


def minimal_any(data: bytes, query: wire.Query, max_udp: int) -> bytes:
    """RFC 8482: answer ANY with one synthesised HINFO record instead of everything."""
    record = (b"\xc0\x0c" + wire.RR_FIXED.pack(13, wire.CLASS_IN, RFC8482_TTL,
                                                 len(RFC8482_HINFO)) + RFC8482_HINFO)
    return synthesised(data, query, record, max_udp)


def synthesised(data: bytes, query: wire.Query, record: bytes, max_udp: int) -> bytes:
    """A NOERROR reply holding one record made here (its owner a pointer to the qname)."""
    flags = wire.QR | wire.RA | (query.flags & (wire.RD | wire.CD))
    opt = wire.opt_record(max_udp, do=query.do) if query.has_opt else b""
    counts = wire.COUNTS.pack(1, 1, 0, 1 if opt else 0)
    return (wire.TYPE_CLASS.pack(query.id, flags) + counts + data[12:query.question_end]
            + record + opt)


def refused(data: bytes, max_udp: int) -> bytes:
    """REFUSED for a client outside the allowed networks (never recursion for them); b"" when
    the packet is unreadable (dropped)."""
    try:
        query = wire.parse_query(data)
    except MalformedPacket:
        return b""
    except FormatError:
        query = None
    return wire.error_reply(data, query, wire.REFUSED, max_udp=max_udp)
