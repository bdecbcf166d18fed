"""ENCODE: turn an upstream reply into a reply template that cache hits patch in bytes.

A template is the reply rendered once, record by record, with compression pointers that stay
valid whatever order the shuffleable records are put in: names written inside a shuffleable
record (A/AAAA in the answer section, and SRV of equal priority if asked) are never used as
compression targets, so a permutation of a run of them never breaks a pointer.
"""

from __future__ import annotations

from consuldns.dns import wire

SHUFFLED_ADDRESS_TYPES = frozenset({wire.A, wire.AAAA})


class Template:
    """A rendered reply: the records as one bytes body, where each ends, where the TTLs sit,
    and which runs of records may be shuffled. Kept compact: 100 000 of them are cached."""

    __slots__ = (
        "ad",
        "body",
        "counts",
        "ends",
        "qtail",
        "rcode",
        "runs",
        "ttl_offsets",
        "ttls",
    )

    def __init__(self, qtail: bytes, counts: bytes, body: bytes, ends: tuple[int, ...],
                 ttl_offsets: tuple[int, ...], ttls: tuple[int, ...],
                 runs: tuple[tuple[int, int], ...], rcode: int, ad: bool):
        self.qtail = qtail  # QTYPE and QCLASS
        self.counts = counts  # QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT packed
        self.body = body  # the records, rendered after a question of the asked length
        self.ends = ends  # offset in body just past each record
        self.ttl_offsets = ttl_offsets  # offset in body of each record's TTL field
        self.ttls = ttls  # each record's TTL before counting down
        self.runs = runs  # [start, end) record indices that may be permuted
        self.rcode = rcode
        self.ad = ad

    @property
    def sections(self) -> tuple[int, int, int]:
        _, answer, authority, additional = wire.COUNTS.unpack(self.counts)
        return answer, authority, additional

    def body_with_ttls(self, ttls: list[int] | tuple[int, ...]) -> bytes:
        """The body with each TTL field replaced."""
        if not ttls:
            return self.body
        patched = bytearray(self.body)
        for offset, ttl in zip(self.ttl_offsets, ttls):
            wire.U32.pack_into(patched, offset, ttl)
        return bytes(patched)

    def split(self, body: bytes) -> list[bytes]:
        """A body (this template's or a patched copy) cut into its records."""
        records = []
        start = 0
        for end in self.ends:
            records.append(body[start:end])
            start = end
        return records


_SHARED: dict = {}
SHARED_LIMIT = 4096  # values kept for sharing; the table is emptied when it fills
SHARED_MAX_ITEMS = 8  # longer tuples are rarely equal between replies: never kept


def intern(value):
    """Share equal small tuples and bytes between templates (TTLs, offsets, counts).

    Only small values are kept, at most SHARED_LIMIT of them: the table must never hold
    memory the cache has let go (cache.max_bytes counts every entry as if nothing were
    shared). Emptying it frees only what no template uses any more.
    """
    if len(value) > SHARED_MAX_ITEMS:
        return value
    shared = _SHARED.get(value)
    if shared is not None:
        return shared
    if len(_SHARED) >= SHARED_LIMIT:
        _SHARED.clear()
    _SHARED[value] = value
    return value


def forget_shared() -> None:
    """Empty the sharing table (the whole cache was flushed)."""
    _SHARED.clear()


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
    start = 12 + len(qname) + 4
    offset = start
    shuffleable = _shuffleable_flags(reply.records, shuffle_addresses, shuffle_srv)
    rendered = []
    ends = []
    ttl_offsets = []
    for record, ttl, movable in zip(reply.records, ttls, shuffleable):
        data, ttl_offset = _render_record(record, ttl, offset, compressor, register=not movable)
        rendered.append(data)
        ttl_offsets.append(offset - start + ttl_offset)
        offset += len(data)
        ends.append(offset - start)
    sections = [sum(1 for r in reply.records if r.section == s) for s in range(3)]
    return Template(
        qtail=intern(wire.TYPE_CLASS.pack(reply.qtype, reply.qclass)),
        counts=intern(wire.COUNTS.pack(1, *sections)),
        body=b"".join(rendered),
        ends=intern(tuple(ends)),
        ttl_offsets=intern(tuple(ttl_offsets)),
        ttls=intern(tuple(ttls)),
        runs=intern(_runs(reply.records, shuffleable)),
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
    """The rdata with its names compressed for the RFC 1035 types, uncompressed otherwise."""
    layout = wire.NAME_LAYOUTS.get(record.rtype)
    if layout is None:
        return record.rdata
    compress = record.rtype in wire.COMPRESSIBLE_RDATA
    parts = []
    written = 0
    for is_name, value in wire.read_rdata(record.rdata, 0, len(record.rdata), layout):
        if is_name and compress:
            value = compressor.write(value, offset + written, register=register)
        elif is_name and register:
            compressor.register(value, offset + written)
        parts.append(value)
        written += len(value)
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


def empty_template(query: wire.Query, rcode: int) -> Template:
    """A reply with no records, e.g. a remembered SERVFAIL."""
    return Template(qtail=wire.TYPE_CLASS.pack(query.qtype, query.qclass),
                    counts=wire.COUNTS.pack(1, 0, 0, 0), body=b"", ends=(), ttl_offsets=(),
                    ttls=(), runs=(), rcode=rcode, ad=False)
