"""PARSE/ENCODE: the DNS wire format, read and written with a minimal scanner over bytes.

Only what a forwarder needs: the header and question of a client query (plus its OPT
record), and every record of an upstream reply with its TTL, type and decompressed rdata.
No library objects are built on the query path (dnspython is used where people read
messages: the CLI, metrics and log labels).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from consuldns.errors import FormatError, MalformedPacket

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
TYPE_CLASS = struct.Struct("!HH")
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
COUNTS = struct.Struct("!HHHH")  # QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT

# Header flag bits.
QR = 0x8000
OPCODE_MASK = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
Z = 0x0040
AD = 0x0020
CD = 0x0010
RCODE_MASK = 0x000F

# Response codes (the extended ones live partly in the OPT record).
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16

# Record types the forwarder treats specially.
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, DNAME, OPT, RRSIG, ANY = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 39, 41, 46, 255)
# Record types whose rdata holds names that may arrive compressed.
MD, MF, MB, MG, MR, MINFO, RP, AFSDB, RT, SIG, PX, NXT, NAPTR = (
    3, 4, 7, 8, 9, 14, 17, 18, 21, 24, 26, 30, 35)
CLASS_IN, CLASS_CH = 1, 3

EDNS_DO = 0x8000
MIN_UDP_SIZE = 512
MAX_NAME_LENGTH = 255

# Kinds of rdata fields: a domain name, a character-string (a length octet and that many
# octets), the rest of the rdata; an integer is a field of that many octets.
NAME, TEXT, REST = "n", "s", "r"
# The layout of the rdata of every type whose names may arrive compressed: the RFC 1035 types
# (their names must be decompressed), the types RFC 3597 §4 says should be (RP, AFSDB, RT,
# SIG, PX, NXT, NAPTR, SRV), and DNAME. Names in the rdata of any other type are never
# compressed by their specification (RRSIG, NSEC, SVCB, ...): that rdata is copied as it is.
# tests/unit/test_rdata_layouts.py checks every type dnspython knows against this table.
NAME_LAYOUTS: dict[int, tuple[object, ...]] = {
    NS: (NAME,), CNAME: (NAME,), PTR: (NAME,), DNAME: (NAME,),
    MD: (NAME,), MF: (NAME,), MB: (NAME,), MG: (NAME,), MR: (NAME,), MINFO: (NAME, NAME),
    MX: (2, NAME), AFSDB: (2, NAME), RT: (2, NAME), SRV: (6, NAME), PX: (2, NAME, NAME),
    SOA: (NAME, NAME, 20), RP: (NAME, NAME),
    NAPTR: (4, TEXT, TEXT, TEXT, NAME),
    SIG: (18, NAME, REST),  # type covered .. key tag, signer's name, signature
    NXT: (NAME, REST),  # next name, type bitmap
}
# The names inside the rdata of these types are written compressed; those of every other
# type uncompressed, which is always legal (RFC 3597 §4).
COMPRESSIBLE_RDATA = frozenset({NS, CNAME, PTR, MX, SOA})
# Address records have one size; clients reject a reply with any other (nginx: "invalid A
# record"), so such a reply is distrusted rather than cached and passed on.
ADDRESS_SIZES = {A: 4, AAAA: 16}


@dataclass(slots=True)
class Query:
    """A client query, read just far enough to route, cache and answer it."""

    id: int
    flags: int
    qname: bytes  # wire form of the question name, exactly as the client wrote it
    qtype: int
    qclass: int
    question_end: int  # offset just past QTYPE/QCLASS
    key: bytes  # cache key: case-folded question + DO/CD bits
    has_opt: bool = False
    udp_size: int = MIN_UDP_SIZE
    edns_version: int = 0
    do: bool = False

    @property
    def cd(self) -> bool:
        return bool(self.flags & CD)

    def with_id(self, qid: int) -> Query:
        """The same query under another ID (a client repeating itself)."""
        return Query(qid, self.flags, self.qname, self.qtype, self.qclass, self.question_end,
                     self.key, self.has_opt, self.udp_size, self.edns_version, self.do)

    @property
    def rd(self) -> bool:
        return bool(self.flags & RD)


@dataclass(slots=True)
class Record:
    """One resource record of a reply, with names decompressed."""

    section: int  # 0 answer, 1 authority, 2 additional
    owner: bytes  # uncompressed wire name, case as received
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes  # names inside it decompressed


@dataclass(slots=True)
class Reply:
    """An upstream reply: header fields, question and records (OPT kept apart)."""

    id: int
    flags: int
    rcode: int  # full 12-bit rcode when an OPT record carried the upper bits
    qname: bytes
    qtype: int
    qclass: int
    records: list[Record]
    has_opt: bool
    size: int

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)

    def section(self, number: int) -> list[Record]:
        return [r for r in self.records if r.section == number]


# ---------------------------------------------------------------- names


def read_name(data: bytes, offset: int) -> tuple[bytes, int]:
    """Read a possibly compressed name; return its uncompressed wire form and the end offset."""
    labels: list[bytes] = []
    end = -1
    total = 1
    jumps = 0
    while True:
        if offset >= len(data):
            raise MalformedPacket("name runs past the end of the message")
        length = data[offset]
        if length == 0:
            offset += 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if offset + 1 >= len(data):
                raise MalformedPacket("truncated compression pointer")
            pointer = ((length & 0x3F) << 8) | data[offset + 1]
            if end < 0:
                end = offset + 2
            jumps += 1
            # A pointer must point backwards; a chain longer than a name's labels is a loop.
            if pointer >= offset or jumps > 127:
                raise MalformedPacket("bad compression pointer")
            offset = pointer
            continue
        if kind:
            raise MalformedPacket("unknown label type")
        label_end = offset + 1 + length
        if label_end > len(data):
            raise MalformedPacket("label runs past the end of the message")
        total += length + 1
        if total > MAX_NAME_LENGTH:
            raise MalformedPacket("name longer than 255 octets")
        labels.append(data[offset:label_end])
        offset = label_end
    return b"".join(labels) + b"\x00", (end if end >= 0 else offset)


def skip_question_name(data: bytes, offset: int) -> int:
    """Return the offset past an uncompressed question name; reject pointers and overlong names."""
    start = offset
    size = len(data)
    while True:
        if offset >= size:
            raise FormatError("question name runs past the end of the message")
        length = data[offset]
        if length == 0:
            offset += 1
            break
        if length > 63:
            raise FormatError("compressed or invalid label in question")
        offset += length + 1
    if offset - start > MAX_NAME_LENGTH:
        raise FormatError("question name longer than 255 octets")
    return offset


def name_to_text(wire: bytes) -> str:
    """Presentation form of an uncompressed wire name, always ending in a dot."""
    labels = []
    offset = 0
    while wire[offset]:
        length = wire[offset]
        raw = wire[offset + 1:offset + 1 + length]
        labels.append("".join(_text_char(b) for b in raw))
        offset += length + 1
    return ".".join(labels) + "."


def _text_char(byte: int) -> str:
    if byte in b".\\":
        return "\\" + chr(byte)
    if 0x21 <= byte <= 0x7E:
        return chr(byte)
    return f"\\{byte:03d}"


def text_to_name(text: str) -> bytes:
    """Wire form of a presentation name (no escapes beyond plain labels); '.' is the root."""
    text = text.strip()
    if text in ("", "."):
        return b"\x00"
    parts = text.rstrip(".").split(".")
    out = bytearray()
    for label in parts:
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not raw or len(raw) > 63:
            raise ValueError(f"invalid label {label!r} in {text!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME_LENGTH:
        raise ValueError(f"name {text!r} is longer than 255 octets")
    return bytes(out)


def name_labels(wire: bytes) -> list[bytes]:
    """The labels of an uncompressed wire name, case-folded, leftmost first."""
    labels = []
    offset = 0
    while wire[offset]:
        length = wire[offset]
        labels.append(wire[offset + 1:offset + 1 + length].lower())
        offset += length + 1
    return labels


# ---------------------------------------------------------------- queries


def parse_query(data: bytes) -> Query:
    """Read a client query.

    Raises MalformedPacket for what must be dropped silently (too short, a response) and
    FormatError for what deserves FORMERR.
    """
    if len(data) < 12:
        raise MalformedPacket("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & QR:
        raise MalformedPacket("a response, not a query")
    if flags & OPCODE_MASK:
        raise FormatError("opcode other than QUERY", NOTIMP)
    if qdcount != 1:
        raise FormatError(f"QDCOUNT is {qdcount}, not 1")
    name_end = skip_question_name(data, 12)
    question_end = name_end + 4
    if question_end > len(data):
        raise FormatError("question runs past the end of the message")
    qtype, qclass = TYPE_CLASS.unpack_from(data, name_end)
    qname = data[12:name_end]
    query = Query(qid, flags, qname, qtype, qclass, question_end, b"")
    if ancount or nscount:
        raise FormatError("a query with answer or authority records")
    if arcount:
        _read_query_additional(data, question_end, arcount, query)
    query.key = cache_key(qname, data[name_end:question_end], query.do, bool(flags & CD))
    return query


# ---------------------------------------------------------------- cache keys
#
# A cache key is the question's name case-folded, then QTYPE and QCLASS (4 octets), then one
# octet for the DO and CD bits: answers differ by those bits (RFC 4035 §3.2), by nothing else.


def cache_key(qname: bytes, type_class: bytes, do: bool, cd: bool) -> bytes:
    """The key of a question: name case-folded, QTYPE+QCLASS octets, then the DO/CD octet."""
    return qname.lower() + type_class + _DO_CD_OCTETS[do][cd]


_DO_CD_OCTETS = ((b"\x00", b"\x01"), (b"\x02", b"\x03"))


def question_key(qname: bytes, qtype: int, do: bool = False, cd: bool = False) -> bytes:
    """The cache key of an IN-class question given by its parts."""
    return cache_key(qname, TYPE_CLASS.pack(qtype, CLASS_IN), do, cd)


def key_name(key: bytes) -> bytes:
    """The case-folded wire name a cache key starts with."""
    return key[:-5]


def _read_query_additional(data: bytes, offset: int, count: int, query: Query) -> None:
    """Find the OPT record among the query's additional records (RFC 6891 §6.1.1)."""
    for _ in range(count):
        if offset < len(data) and data[offset] == 0:
            owner, offset = b"\x00", offset + 1  # the root, as every OPT record is owned
        else:
            try:
                owner, offset = read_name(data, offset)
            except MalformedPacket as exc:
                raise FormatError(str(exc)) from None
        if offset + 10 > len(data):
            raise FormatError("additional record runs past the end of the message")
        rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, offset)
        offset += 10 + rdlength
        if offset > len(data):
            raise FormatError("additional record data runs past the end of the message")
        if rtype != OPT:
            continue
        if query.has_opt or owner != b"\x00":
            raise FormatError("more than one OPT record, or an OPT not owned by the root")
        query.has_opt = True
        query.udp_size = max(rclass, MIN_UDP_SIZE)
        query.edns_version = (ttl >> 16) & 0xFF
        query.do = bool(ttl & EDNS_DO)


def build_query(qid: int, qname: bytes, qtype: int, qclass: int, *, rd: bool = True,
                cd: bool = False, edns_size: int = 0, do: bool = False) -> bytes:
    """A query message; edns_size > 0 adds an OPT record with that payload size."""
    flags = (RD if rd else 0) | (CD if cd else 0)
    header = HEADER.pack(qid, flags, 1, 0, 0, 1 if edns_size else 0)
    message = header + qname + TYPE_CLASS.pack(qtype, qclass)
    if edns_size:
        message += opt_record(edns_size, do=do)
    return message


def opt_record(udp_size: int, *, do: bool = False, ext_rcode: int = 0) -> bytes:
    """An OPT pseudo-record with no options."""
    ttl = (ext_rcode << 24) | (EDNS_DO if do else 0)
    return b"\x00" + RR_FIXED.pack(OPT, udp_size, ttl, 0)


def error_reply(data: bytes, query: Query | None, rcode: int, *, max_udp: int = 1232) -> bytes:
    """A reply carrying only an rcode: question echoed when it was readable, OPT when asked."""
    if query is None:
        qid, flags = struct.unpack_from("!HH", data)
        header_flags = QR | (flags & (OPCODE_MASK | RD | CD)) | RA | (rcode & RCODE_MASK)
        edns = find_opt(data)
        if edns is None:
            return HEADER.pack(qid, header_flags, 0, 0, 0, 0)
        opt = opt_record(max_udp, do=edns.do, ext_rcode=rcode >> 4)
        return HEADER.pack(qid, header_flags, 0, 0, 0, 1) + opt
    header_flags = QR | (query.flags & (OPCODE_MASK | RD | CD)) | RA | (rcode & RCODE_MASK)
    question = data[12:query.question_end]
    if not query.has_opt:
        return HEADER.pack(query.id, header_flags, 1, 0, 0, 0) + question
    opt = opt_record(max_udp, do=query.do, ext_rcode=rcode >> 4)
    return HEADER.pack(query.id, header_flags, 1, 0, 0, 1) + question + opt


def find_opt(data: bytes) -> Query | None:
    """The EDNS fields of a query parse_query rejected, when every record before its one OPT
    record can be read: the FORMERR (or NOTIMP) then carries OPT too (RFC 6891 §7)."""
    probe = Query(0, 0, b"", 0, 0, 12, b"")
    try:
        qdcount, ancount, nscount, arcount = COUNTS.unpack_from(data, 4)
        offset = 12
        for _ in range(qdcount):
            offset = _skip_name(data, offset) + 4
        for _ in range(ancount + nscount):
            offset = _skip_name(data, offset)
            if offset + 10 > len(data):
                raise MalformedPacket("record runs past the end of the message")
            offset += 10 + U16.unpack_from(data, offset + 8)[0]
        _read_query_additional(data, offset, arcount, probe)
    except (MalformedPacket, FormatError):
        return None
    return probe if probe.has_opt else None


def _skip_name(data: bytes, offset: int) -> int:
    """The offset past a name, without following its pointer: linear in the message."""
    while offset < len(data):
        length = data[offset]
        if length >= 0xC0:
            return offset + 2
        if length > 63:
            raise MalformedPacket("unknown label type")
        offset += length + 1
        if not length:
            return offset
    raise MalformedPacket("name runs past the end of the message")


# ---------------------------------------------------------------- replies


def parse_reply(data: bytes) -> Reply:
    """Read an upstream reply completely; raises MalformedPacket when it cannot be trusted."""
    if len(data) < 12:
        raise MalformedPacket("reply shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if not flags & QR:
        raise MalformedPacket("reply without QR")
    if qdcount != 1:
        raise MalformedPacket(f"reply with QDCOUNT {qdcount}")
    qname, offset = read_name(data, 12)
    if offset + 4 > len(data):
        raise MalformedPacket("reply question runs past the end")
    qtype, qclass = TYPE_CLASS.unpack_from(data, offset)
    offset += 4
    records: list[Record] = []
    rcode = flags & RCODE_MASK
    has_opt = False
    for section, count in ((0, ancount), (1, nscount), (2, arcount)):
        for _ in range(count):
            record, offset = _read_record(data, offset, section)
            if record.rtype == OPT:
                has_opt = True
                rcode |= (record.ttl >> 24) << 4
                continue
            records.append(record)
    return Reply(qid, flags, rcode, qname, qtype, qclass, records, has_opt, len(data))


def _read_record(data: bytes, offset: int, section: int) -> tuple[Record, int]:
    owner, offset = read_name(data, offset)
    if offset + 10 > len(data):
        raise MalformedPacket("record header runs past the end")
    rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, offset)
    offset += 10
    end = offset + rdlength
    if end > len(data):
        raise MalformedPacket("record data runs past the end")
    if rdlength != ADDRESS_SIZES.get(rtype, rdlength) and rclass == CLASS_IN:
        raise MalformedPacket("address record of the wrong length")
    layout = NAME_LAYOUTS.get(rtype)
    if layout is None:
        rdata = data[offset:end]
    else:
        rdata = b"".join(value for _, value in read_rdata(data, offset, end, layout))
    if ttl & 0x80000000:
        ttl = 0  # RFC 2181 §8: a TTL with the top bit set is treated as zero
    return Record(section, owner, rtype, rclass, ttl, rdata), end


def read_rdata(data: bytes, offset: int, end: int,
               layout: tuple[object, ...]) -> list[tuple[bool, bytes]]:
    """The fields of the rdata at data[offset:end] as (is a name, octets), names decompressed;
    MalformedPacket unless the fields fill the rdata exactly."""
    fields = []
    for kind in layout:
        if kind == NAME:
            name, offset = read_name(data, offset)
            fields.append((True, name))
        else:
            size = _field_size(data, offset, end, kind)
            fields.append((False, data[offset:offset + size]))
            offset += size
        if offset > end:
            raise MalformedPacket("record data shorter than its type needs")
    if offset != end:
        raise MalformedPacket("record data longer than its type allows")
    return fields


def _field_size(data: bytes, offset: int, end: int, kind: object) -> int:
    if kind == REST:
        return end - offset
    if kind == TEXT:
        if offset >= end:
            raise MalformedPacket("record data shorter than its type needs")
        return 1 + data[offset]
    assert isinstance(kind, int)
    return kind


def soa_minimum(rdata: bytes) -> int:
    """The MINIMUM field of decompressed SOA rdata (its last four octets)."""
    return U32.unpack_from(rdata, len(rdata) - 4)[0]
