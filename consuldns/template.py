"""ENCODE: turn an upstream reply into a reply template that cache hits patch in bytes.

A template is the reply rendered once, record by record, with compression pointers that stay
valid whatever order the shuffleable records are put in: names written inside a shuffleable
record (A/AAAA in the answer section, and SRV of equal priority if asked) are never used as
compression targets, so a permutation of a run of them never breaks a pointer.
"""

from __future__ import annotations

from dataclasses import dataclass

from consuldns import wire

SHUFFLED_ADDRESS_TYPES = frozenset({wire.A, wire.AAAA})


@dataclass(slots=True)
class Template:
    """A rendered reply: records as bytes, where their TTLs sit, and which runs may be shuffled."""

    qname: bytes  # question name as first asked (patched per client for case)
    qtail: bytes  # QTYPE and QCLASS
    counts: bytes  # QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT packed
    records: tuple[bytes, ...]
    ttl_offsets: tuple[int, ...]  # per record, where its TTL field sits in the record bytes
    ttls: tuple[int, ...]  # per record, the TTL it is served with before counting down
    runs: tuple[tuple[int, int], ...]  # [start, end) record indices that may be permuted
    sections: tuple[int, int, int]
    rcode: int
    ad: bool

    @property
    def size(self) -> int:
        return 12 + len(self.qname) + 4 + sum(len(r) for r in self.records)


class _Compressor:
    """Writes names with pointers to earlier names that are safe targets."""

    def __init__(self, qname: bytes):
        self.targets: dict[bytes, int] = {}
        self.register(qname, 12)

    def register(self, name: bytes, offset: int, written: int | None = None) -> None:
        """Make the suffixes of name that start in its first `written` octets targets."""
        limit = len(name) if written is None else written
        position = 0
        while name[position] and position < limit and offset + position < 0x3FFF:
            self.targets.setdefault(name[position:].lower(), offset + position)
            position += name[position] + 1

    def write(self, name: bytes, offset: int, *, register: bool) -> bytes:
        position = 0
        while name[position]:
            target = self.targets.get(name[position:].lower())
            if target is not None:
                written = name[:position] + wire.U16.pack(0xC000 | target)
                break
            position += name[position] + 1
        else:
            written = name
        if register and position:
            self.register(name, offset, position)
        return written


def render(reply: wire.Reply, qname: bytes, ttls: list[int], *, shuffle_addresses: bool = True,
           shuffle_srv: bool = False) -> Template:
    """Render reply's records (OPT excluded) after the question qname, with the given TTLs."""
    compressor = _Compressor(qname)
    offset = 12 + len(qname) + 4
    shuffleable = _shuffleable_flags(reply.records, shuffle_addresses, shuffle_srv)
    rendered = []
    ttl_offsets = []
    for record, ttl, movable in zip(reply.records, ttls, shuffleable):
        data, ttl_offset = _render_record(record, ttl, offset, compressor, register=not movable)
        rendered.append(data)
        ttl_offsets.append(ttl_offset)
        offset += len(data)
    sections = tuple(sum(1 for r in reply.records if r.section == s) for s in range(3))
    return Template(
        qname=qname,
        qtail=wire.TYPE_CLASS.pack(reply.qtype, reply.qclass),
        counts=wire.COUNTS.pack(1, *sections),
        records=tuple(rendered),
        ttl_offsets=tuple(ttl_offsets),
        ttls=tuple(ttls),
        runs=_runs(reply.records, shuffleable),
        sections=(sections[0], sections[1], sections[2]),
        rcode=reply.rcode,
        ad=bool(reply.flags & wire.AD),
    )


def _render_record(record: wire.Record, ttl: int, offset: int, compressor: _Compressor, *,
                   register: bool) -> tuple[bytes, int]:
    owner = compressor.write(record.owner, offset, register=register)
    rdata_offset = offset + len(owner) + 10
    rdata = _render_rdata(record, rdata_offset, compressor, register=register)
    fixed = wire.RR_FIXED.pack(record.rtype, record.rclass, ttl, len(rdata))
    return owner + fixed + rdata, len(owner) + 4


def _render_rdata(record: wire.Record, offset: int, compressor: _Compressor, *,
                  register: bool) -> bytes:
    layout = wire.NAME_LAYOUTS.get(record.rtype)
    if layout is None:
        return record.rdata
    compress = record.rtype in wire.COMPRESSIBLE_RDATA
    parts = []
    position = 0
    written = 0
    for field in layout:
        if field == "n":
            name, position = wire.read_name(record.rdata, position)
            if compress:
                name = compressor.write(name, offset + written, register=register)
            elif register:
                compressor.register(name, offset + written)
            parts.append(name)
            written += len(name)
        else:
            assert isinstance(field, int)
            parts.append(record.rdata[position:position + field])
            position += field
            written += field
    return b"".join(parts)


def _shuffleable_flags(records: list[wire.Record], addresses: bool, srv: bool) -> list[bool]:
    flags = []
    for record in records:
        movable = record.section == 0 and (
            (addresses and record.rtype in SHUFFLED_ADDRESS_TYPES)
            or (srv and record.rtype == wire.SRV))
        flags.append(movable)
    return flags


def _run_key(record: wire.Record) -> tuple[bytes, int, bytes]:
    priority = record.rdata[:2] if record.rtype == wire.SRV else b""
    return record.owner.lower(), record.rtype, priority


def _runs(records: list[wire.Record], shuffleable: list[bool]) -> tuple[tuple[int, int], ...]:
    """Maximal runs of adjacent shuffleable records of one owner, type (and SRV priority)."""
    runs = []
    start = 0
    while start < len(records):
        if not shuffleable[start]:
            start += 1
            continue
        end = start + 1
        key = _run_key(records[start])
        while end < len(records) and shuffleable[end] and _run_key(records[end]) == key:
            end += 1
        if end - start > 1:
            runs.append((start, end))
        start = end
    return tuple(runs)
