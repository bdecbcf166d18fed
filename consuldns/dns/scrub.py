"""SCRUB: drop answer records that do not answer the question, as unbound does.

The answer section of an upstream reply may hold only the question's name, the names its
CNAME and DNAME records lead to, the DNAME records that lead there and the RRSIGs of all
of them; anything else (an A record for another name, say) is dropped before the reply is
cached or sent. Names compare case-insensitively. The authority and additional sections
are left alone: Consul puts the addresses of SRV targets in the additional section.
"""

from __future__ import annotations

from dataclasses import replace

from consuldns.dns import wire


def scrub_answer(reply: wire.Reply) -> wire.Reply:
    """The reply without the answer records outside the question's chain (itself when none)."""
    answers = reply.section(0)
    chain, dname_owners = _chain(reply.qname.lower(), answers)
    kept = [r for r in reply.records if r.section or _belongs(r, chain, dname_owners)]
    if len(kept) == len(reply.records):
        return reply
    return replace(reply, records=kept)


def _chain(qname: bytes, answers: list[wire.Record]) -> tuple[set[bytes], set[bytes]]:
    """The names the question leads to through CNAME and DNAME records (in any order), and
    the owners of the DNAME records that took part."""
    chain = {qname}
    dname_owners: set[bytes] = set()
    grown = True
    while grown:
        grown = False
        for record in answers:
            reached = _reached(record, chain)
            if reached and record.rtype == wire.DNAME:
                dname_owners.add(record.owner.lower())
            if not reached <= chain:
                chain |= reached
                grown = True
    return chain, dname_owners


def _reached(record: wire.Record, chain: set[bytes]) -> set[bytes]:
    """The names a CNAME or DNAME record leads to from the chain."""
    owner = record.owner.lower()
    if record.rtype == wire.CNAME and owner in chain:
        return {record.rdata.lower()}
    if record.rtype == wire.DNAME:
        target = record.rdata.lower()
        return {name for name in (_substitute(n, owner, target) for n in chain) if name}
    return set()


def _substitute(name: bytes, owner: bytes, target: bytes) -> bytes | None:
    """The name a DNAME from owner to target makes of a name below owner (RFC 6672 §2.2),
    or None when the name is not below owner or the result is too long."""
    position = 0
    while name[position]:
        position += name[position] + 1
        if name[position:] == owner:
            synthesised = name[:position] + target
            return synthesised if len(synthesised) <= wire.MAX_NAME_LENGTH else None
    return None


def _belongs(record: wire.Record, chain: set[bytes], dname_owners: set[bytes]) -> bool:
    owner = record.owner.lower()
    if owner in chain:
        return True
    if owner not in dname_owners:
        return False
    return record.rtype == wire.DNAME or (
        record.rtype == wire.RRSIG and record.rdata[:2] == wire.U16.pack(wire.DNAME))
