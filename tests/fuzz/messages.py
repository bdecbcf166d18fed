"""Hypothesis strategies for DNS messages, with an encoder of our own as the oracle.

Replies are written here byte by byte (with or without name compression), so the test knows
exactly which records a message holds: dnspython merges records into RRsets (one TTL, no
duplicates) and cannot serve as the record-level oracle. dnspython is still used as the
independent reader of what consuldns sends.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import strategies as st

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41
MB, RP, SIG, NAPTR = 7, 17, 24, 35
# Rdata layouts: "n" a name, "s" a character-string, "r" the rest, an integer a fixed size.
NAME_TYPES = {NS: ("n",), CNAME: ("n",), PTR: ("n",), MX: (2, "n"), SRV: (6, "n"),
              SOA: ("n", "n", 20), MB: ("n",), RP: ("n", "n"),
              NAPTR: (4, "s", "s", "s", "n"), SIG: (18, "n", "r")}
COMPRESSIBLE = {NS, CNAME, PTR, MX, SOA, MB}
# Compressed only with compress_srv: RFC 2782 forbids it for SRV, RFC 3597 §4 allows it for
# the others, and a reader should decompress them all.
SOMETIMES_COMPRESSED = {SRV, RP, NAPTR, SIG}
PRIVATE_TYPE = 65280  # RFC 6895 private use: opaque rdata for every reader


@dataclass(frozen=True)
class Rec:
    """One record as the oracle sees it: names uncompressed, TTL as sent."""

    section: int
    owner: bytes
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes  # names uncompressed (as consuldns's parse_reply gives them)


# ---------------------------------------------------------------- names

LDH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
ldh_label = st.text(LDH, min_size=1, max_size=12).map(str.encode)
any_label = st.binary(min_size=1, max_size=63)


def wire_name(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


@st.composite
def names(draw, label=ldh_label, max_labels: int = 6) -> bytes:
    labels = draw(st.lists(label, min_size=0, max_size=max_labels))
    while len(wire_name(labels)) > 255:
        labels.pop()
    return wire_name(labels)


def name_labels(name: bytes) -> list[bytes]:
    labels, offset = [], 0
    while name[offset]:
        labels.append(name[offset + 1:offset + 1 + name[offset]])
        offset += name[offset] + 1
    return labels


def recase(draw, name: bytes) -> bytes:
    """The same name with the case of its letters drawn at random (length octets are below
    64, never letters, so the structure is kept)."""
    mask = draw(st.integers(0, 2 ** len(name) - 1))
    out = bytearray(name)
    for i, byte in enumerate(out):
        if mask >> i & 1 and (65 <= byte <= 90 or 97 <= byte <= 122):
            out[i] ^= 0x20
    return bytes(out)


@st.composite
def related_name(draw, qname: bytes) -> bytes:
    """A name sharing suffixes with qname (so compression has work), or another one."""
    labels = name_labels(qname)
    kind = draw(st.integers(0, 3))
    if kind == 0 or not labels:
        return recase(draw, qname)
    if kind == 1:
        return wire_name([draw(ldh_label), *labels])[:255] if len(qname) < 240 else qname
    if kind == 2:
        return wire_name(labels[draw(st.integers(0, len(labels) - 1)):])
    return draw(names())


# ---------------------------------------------------------------- records

ttls = st.one_of(st.integers(0, 86400), st.integers(0, 2**32 - 1))


@st.composite
def rdata_fields(draw, rtype: int, qname: bytes) -> tuple:
    """(fixed-size rdata, or a tuple of fields: bytes or names marked ('n', name))."""
    if rtype == A:
        return (draw(st.binary(min_size=4, max_size=4)),)
    if rtype == AAAA:
        return (draw(st.binary(min_size=16, max_size=16)),)
    if rtype == TXT:
        strings = draw(st.lists(st.binary(max_size=80), min_size=1, max_size=4))
        return (b"".join(bytes([len(s)]) + s for s in strings),)
    if rtype == PRIVATE_TYPE:
        return (draw(st.binary(max_size=40)),)
    fields = []
    for field in NAME_TYPES[rtype]:
        if field == "n":
            fields.append(("n", draw(related_name(qname))))
        elif field == "s":
            text = draw(st.binary(max_size=20))
            fields.append(bytes([len(text)]) + text)
        elif field == "r":
            fields.append(draw(st.binary(max_size=30)))
        else:
            fields.append(draw(st.binary(min_size=field, max_size=field)))
    return tuple(fields)


@st.composite
def records(draw, qname: bytes, qtype: int, max_records: int = 16) -> list[tuple]:
    """(section, owner, rtype, ttl, fields) tuples; answers often of the asked type."""
    count = draw(st.integers(0, max_records))
    out = []
    for _ in range(count):
        section = draw(st.sampled_from([0, 0, 0, 1, 2]))
        rtype = draw(st.sampled_from([qtype, qtype, A, AAAA, CNAME, NS, PTR, MX, SRV, TXT, SOA,
                                      MB, RP, NAPTR, SIG, PRIVATE_TYPE]))
        if rtype not in (A, AAAA, TXT, PRIVATE_TYPE) and rtype not in NAME_TYPES:
            rtype = A
        owner = draw(related_name(qname))
        out.append((section, owner, rtype, draw(ttls), draw(rdata_fields(rtype, qname))))
    out.sort(key=lambda item: item[0])  # sections in order, as on the wire
    return out


class Writer:
    """Writes names with optional RFC 1035 compression, like a real server (suffixes match
    case-insensitively, so a reader sees the case of the first spelling)."""

    def __init__(self, compress: bool):
        self.data = bytearray()
        self.compress = compress
        self.targets: dict[bytes, tuple[int, bytes]] = {}

    def name(self, name: bytes) -> bytes:
        """Write name; return it as a reader will decompress it."""
        position = 0
        while name[position]:
            target = self.targets.get(name[position:].lower()) if self.compress else None
            if target is not None:
                offset, spelled = target
                read = name[:position] + spelled
                self._remember(read, position)
                self.data += name[:position] + struct.pack("!H", 0xC000 | offset)
                return read
            position += name[position] + 1
        self._remember(name, len(name))
        self.data += name
        return name

    def _remember(self, read: bytes, upto: int) -> None:
        """Suffixes of `read` starting in its first `upto` octets, about to be written."""
        start = len(self.data)
        position = 0
        while read[position] and position < upto:
            if start + position < 0x3FFF:
                self.targets.setdefault(read[position:].lower(), (start + position,
                                                                  read[position:]))
            position += read[position] + 1


def encode_reply(qid: int, flags: int, qname: bytes, qtype: int, qclass: int, recs: list[tuple],
                 *, compress: bool, opt: tuple[int, int] | None = None,
                 compress_srv: bool = False) -> tuple[bytes, list[Rec]]:
    """Wire bytes of a reply and the records an exact reader must find in it.

    opt: (udp size, extended rcode) adds an OPT record to the additional section.
    """
    counts = [0, 0, 0]
    for section, *_ in recs:
        counts[section] += 1
    if opt is not None:
        counts[2] += 1
    writer = Writer(compress)
    writer.data += struct.pack("!HHHHHH", qid, flags, 1, *counts)
    writer.name(qname)
    writer.data += struct.pack("!HH", qtype, qclass)
    expected = []
    for section, owner, rtype, ttl, fields in recs:
        owner = writer.name(owner)
        fixed_at = len(writer.data)
        writer.data += b"\x00" * 10
        start = len(writer.data)
        plain = b""
        for field in fields:
            if isinstance(field, tuple):
                name = field[1]
                compressible = rtype in COMPRESSIBLE or (
                    rtype in SOMETIMES_COMPRESSED and compress_srv)
                if compressible:
                    name = writer.name(name)
                else:
                    writer.data += name
                plain += name
            else:
                writer.data += field
                plain += field
        struct.pack_into("!HHIH", writer.data, fixed_at, rtype, 1, ttl, len(writer.data) - start)
        expected.append(Rec(section, owner, rtype, 1, ttl if ttl < 2**31 else 0, plain))
    if opt is not None:
        size, ext = opt
        writer.data += b"\x00" + struct.pack("!HHIH", OPT, size, ext << 24, 0)
    return bytes(writer.data), expected


# ---------------------------------------------------------------- queries


@st.composite
def queries(draw, label=ldh_label) -> tuple[bytes, dict]:
    """A well-formed client query and the fields parse_query must find."""
    qid = draw(st.integers(0, 0xFFFF))
    flags = draw(st.integers(0, 0xFFFF)) & ~0xF800 & ~0x000F  # QR=0, opcode 0, rcode bits 0
    qname = draw(names(label=label))
    qtype = draw(st.one_of(st.sampled_from([A, AAAA, SRV, TXT, MX, PTR, 255]),
                           st.integers(0, 0xFFFF)))
    qclass = draw(st.sampled_from([1, 1, 1, 3, 254, 255]))
    edns = draw(st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255),
                                      st.booleans()))
    message = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    message += qname + struct.pack("!HH", qtype, qclass)
    if edns:
        size, version, do = edns
        message += b"\x00" + struct.pack("!HHIH", OPT, size, (version << 16) | (0x8000 if do
                                                                                 else 0), 0)
    fields = {"id": qid, "flags": flags, "qname": qname, "qtype": qtype, "qclass": qclass,
              "has_opt": bool(edns), "udp_size": max(edns[0], 512) if edns else 512,
              "edns_version": edns[1] if edns else 0, "do": bool(edns and edns[2])}
    return message, fields


# ---------------------------------------------------------------- mutations

INTERESTING = [0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xC0, 0xFF]


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """data with a few edits a fuzzer would make: flips, interesting bytes, cuts, splices."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 5))
        position = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == 0 and out:
            out[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == 1 and out:
            out[position] = draw(st.sampled_from(INTERESTING))
        elif kind == 2:
            del out[position:position + draw(st.integers(1, 16))]
        elif kind == 3:
            out[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == 4 and len(out) >= 12:
            count = draw(st.integers(4, 11)) & ~1  # one of the four counts
            struct.pack_into("!H", out, count, draw(st.sampled_from([0, 1, 2, 0xFFFF])))
        elif kind == 5 and out:
            pointer = draw(st.integers(0, len(out) + 4))
            out[position:position + 2] = struct.pack("!H", 0xC000 | pointer)
    return bytes(out)
