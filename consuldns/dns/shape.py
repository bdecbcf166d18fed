"""SHAPE: build the reply a client gets from a template, in bytes.

Header flags (docs/design.md, "Replies"): QR and RA set, AA cleared (a forwarder is not
authoritative), RD and CD copied from the query, AD only when the client asked with DO or AD,
Z never. The question is echoed exactly as the client wrote it. Address records are shuffled
on every reply. UDP replies are fitted to the client's size with TC set when records are cut.
An extended rcode (over 15) reaches a client without EDNS as SERVFAIL.
"""

from __future__ import annotations

import itertools
import random

from consuldns.dns import wire
from consuldns.dns.template import Template

# A TCP message carries at most 65535 octets (its two-octet length prefix).
TCP_LIMIT = 65535

# All orders of short runs, so that a shuffle of up to 5 records is one random index.
_PERMUTATIONS = {n: list(itertools.permutations(range(n))) for n in range(2, 6)}
# Header flags of the query that its reply depends on (reply_flags).
_QUERY_FLAGS = wire.RD | wire.CD | wire.AD


def shuffled(records: list[bytes], runs: tuple[tuple[int, int], ...],
             rng: random.Random) -> list[bytes]:
    """The records with each shuffleable run put in a random order."""
    out = list(records)
    for start, end in runs:
        orders = _PERMUTATIONS.get(end - start)
        if orders is not None:
            _reorder(out, records, start, orders[int(rng.random() * len(orders))])
        else:
            part = out[start:end]
            rng.shuffle(part)
            out[start:end] = part
    return out


def order_count(runs: tuple[tuple[int, int], ...]) -> int:
    """How many orders the runs' records can take (1: none to shuffle), when each run has
    at most 5 records; 0 when one has more."""
    count = 1
    for start, end in runs:
        orders = _PERMUTATIONS.get(end - start)
        if orders is None:
            return 0
        count *= len(orders)
    return count


def arranged(records: list[bytes], runs: tuple[tuple[int, int], ...],
             index: int) -> list[bytes]:
    """The records in order number `index` (0 <= index < order_count(runs)): each run's
    permutation is one digit of index, in mixed radix."""
    out = list(records)
    for start, end in runs:
        orders = _PERMUTATIONS[end - start]
        index, digit = divmod(index, len(orders))
        _reorder(out, records, start, orders[digit])
    return out


def _reorder(out: list[bytes], records: list[bytes], start: int, order: tuple[int, ...]):
    out[start:start + len(order)] = [records[start + i] for i in order]


def reply_flags(template: Template, query: wire.Query) -> int:
    flags = wire.QR | wire.RA | (query.flags & (wire.RD | wire.CD)) | (template.rcode & 0xF)
    if template.ad and (query.do or query.flags & wire.AD):
        flags |= wire.AD
    return flags


def build(template: Template, body: bytes, query: wire.Query, limit: int, *, max_udp: int,
          rng: random.Random | None = None) -> bytes:
    """Assemble the reply to query from a template body (TTLs already set).

    rng shuffles the template's runs (None keeps the order); limit is the client's size
    (0 means none, for TCP).
    """
    records = None
    if template.runs and rng is not None:
        records = shuffled(template.split(body), template.runs, rng)
    return _assemble(template, body, records, query, limit, max_udp)


def _assemble(template: Template, body: bytes, records: list[bytes] | None,
              query: wire.Query, limit: int, max_udp: int) -> bytes:
    """The reply from the body, or from its records in the order given."""
    if template.rcode > wire.RCODE_MASK and not query.has_opt:
        return _servfail(template, query)
    if records is not None:
        body = b"".join(records)
    flags = reply_flags(template, query)
    opt = _opt_for(query, template.rcode, max_udp)
    size = 16 + len(query.qname) + len(body) + len(opt)
    if not limit or size <= limit:
        counts = template.counts if not opt else _counts(template.sections, 1)
        return (wire.TYPE_CLASS.pack(query.id, flags) + counts + query.qname + template.qtail
                + body + opt)
    if records is None:
        records = template.split(body)
    return _fit(template, records, query, flags, opt, limit)


def shape_key(query: wire.Query, limit: int) -> tuple:
    """What a reply depends on besides its template and ID: queries with equal keys get
    the same reply (but for the ID and the order of the shuffled records)."""
    return query.qname, query.flags & _QUERY_FLAGS, query.has_opt, query.do, limit


class Replies:
    """The replies to queries of one shape_key from one template body, for the waiters of
    one exchange: each order of the records is assembled once, then a reply costs a random
    index and its ID. Every reply's order is drawn uniformly among all orders of every
    shuffled run, as build's shuffle draws it; a run of more than 5 records is shuffled per
    reply instead."""

    __slots__ = ("body", "built", "limit", "max_udp", "orders", "query", "rng", "template")

    def __init__(self, template: Template, body: bytes, query: wire.Query, limit: int,
                 max_udp: int, rng: random.Random | None):
        self.template, self.body, self.query = template, body, query
        self.limit, self.max_udp, self.rng = limit, max_udp, rng
        self.orders = order_count(template.runs) if rng is not None else 1
        self.built: dict[int, bytes] = {}

    def reply(self, qid: bytes) -> bytes:
        """The reply under the ID `qid` (2 bytes, as in the query)."""
        orders = self.orders
        if not orders:
            return qid + build(self.template, self.body, self.query, self.limit,
                               max_udp=self.max_udp, rng=self.rng)[2:]
        index = int(self.rng.random() * orders) if orders > 1 else 0
        reply = self.built.get(index)
        if reply is None:
            records = arranged(self.template.split(self.body), self.template.runs, index)
            reply = self.built[index] = _assemble(self.template, self.body, records,
                                                  self.query, self.limit, self.max_udp)
        return qid + reply[2:]


def _servfail(template: Template, query: wire.Query) -> bytes:
    """SERVFAIL for an extended rcode (BADVERS, BADCOOKIE, ...) that a client without EDNS
    cannot receive: its upper bits travel in OPT, and the lower ones alone mean another code."""
    flags = wire.QR | wire.RA | (query.flags & (wire.RD | wire.CD)) | wire.SERVFAIL
    return (wire.TYPE_CLASS.pack(query.id, flags) + wire.COUNTS.pack(1, 0, 0, 0) + query.qname
            + template.qtail)


def _opt_for(query: wire.Query, rcode: int, max_udp: int) -> bytes:
    if not query.has_opt:
        return b""
    return wire.opt_record(max_udp, do=query.do, ext_rcode=rcode >> 4)


def _counts(sections: tuple[int, int, int], extra_additional: int) -> bytes:
    return wire.COUNTS.pack(1, sections[0], sections[1], sections[2] + extra_additional)


def _fit(template: Template, records: tuple[bytes, ...] | list[bytes], query: wire.Query,
         flags: int, opt: bytes, limit: int) -> bytes:
    """Keep as many whole records as fit; TC only when answer or authority records are cut.

    RFC 2181 §9: missing additional data alone does not make a reply truncated. Keeping the
    records that fit (instead of an empty TC reply) lets stub resolvers without TCP fallback
    still use the addresses.
    """
    room = limit - 16 - len(query.qname) - len(opt)
    kept = 0
    for record in records:
        if len(record) > room:
            break
        room -= len(record)
        kept += 1
    answer, authority, _ = template.sections
    if kept < answer + authority:
        flags |= wire.TC
    sections = (min(kept, answer), min(max(kept - answer, 0), authority),
                max(kept - answer - authority, 0))
    counts = _counts(sections, 1 if opt else 0)
    return (wire.TYPE_CLASS.pack(query.id, flags) + counts + query.qname + template.qtail
            + b"".join(records[:kept]) + opt)


def udp_limit(query: wire.Query, max_udp: int) -> int:
    """What a UDP reply to query may weigh: 512 without EDNS, else the client's size capped."""
    if not query.has_opt:
        return wire.MIN_UDP_SIZE
    return min(query.udp_size, max_udp)
