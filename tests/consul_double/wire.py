"""Wire format: parse a query, encode a response. Pure functions on bytes.

The encoder is our own rather than dnslib's packer because the double must size
messages the way miekg/dns does: SRV targets are never compressed but are remembered
for later names, compression is case-sensitive, and Consul sizes some replies
uncompressed. Rdata of A/AAAA comes from dnslib (records.py).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from typing import NamedTuple

from .records import SERIAL, TYPE_OPT, RawName, Record

HEADER = struct.Struct("!6H")
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_AD = 0x0020
FLAG_CD = 0x0010
OPT_ECS = 8
_MAX_POINTER = 0x3FFF


class Unanswerable(Exception):
    """Too short for a header, or a response: miekg drops these without a reply."""


class MalformedQuery(Exception):
    """The header parsed but the rest did not (FORMERR)."""


class Edns(NamedTuple):
    """The client's OPT record: advertised UDP size and the ECS option, if any."""

    udp_size: int
    ecs: bytes | None = None


class Query(NamedTuple):
    """One parsed query; question bytes and labels keep the client's case."""

    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int
    labels: tuple[str, ...] = ()
    qtype: int = 0
    qclass: int = 0
    question: bytes = b""
    edns: Edns | None = None

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def name(self) -> str:
        """The question name as sent, with a trailing dot."""
        return ".".join(self.labels) + "."

    @property
    def has_question(self) -> bool:
        return bool(self.question)


def parse_header(data: bytes) -> Query:
    """Only the header; raises Unanswerable when there is not even that."""
    if len(data) < 12:
        raise Unanswerable("short packet")
    return Query(*HEADER.unpack_from(data))


def _read_labels(data: bytes, offset: int, allow_pointers: bool) -> tuple[list[str], int]:
    """Labels of the name at offset and the offset just after it."""
    labels: list[str] = []
    end = -1
    hops = 0
    while True:
        if offset >= len(data):
            raise MalformedQuery("name runs past the end")
        length = data[offset]
        if length == 0:
            return labels, (end if end >= 0 else offset + 1)
        if length & 0xC0 == 0xC0:
            if not allow_pointers or offset + 1 >= len(data) or hops > 64:
                raise MalformedQuery("bad compression pointer")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            hops += 1
            continue
        if length & 0xC0:
            raise MalformedQuery("bad label type")
        label = data[offset + 1:offset + 1 + length]
        if len(label) != length:
            raise MalformedQuery("label runs past the end")
        labels.append(label.decode("latin-1"))
        offset += 1 + length


def read_name(data: bytes, offset: int) -> tuple[list[str], int]:
    """Labels of an uncompressed name at offset, and the offset after it."""
    return _read_labels(data, offset, False)


def _skip_rr(data: bytes, offset: int) -> tuple[int, int, int, int]:
    """(type, class, rdata offset, next offset) of the RR at offset."""
    _, offset = _read_labels(data, offset, True)
    if offset + 10 > len(data):
        raise MalformedQuery("truncated RR header")
    rtype, rclass, _ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
    start = offset + 10
    if start + rdlength > len(data):
        raise MalformedQuery("truncated rdata")
    return rtype, rclass, start, start + rdlength


def _parse_opt(data: bytes, udp_size: int, start: int, end: int) -> Edns:
    ecs = None
    while start + 4 <= end:
        code, length = struct.unpack_from("!HH", data, start)
        if start + 4 + length > end:
            raise MalformedQuery("truncated EDNS option")
        if code == OPT_ECS:
            ecs = data[start + 4:start + 4 + length]
        start += 4 + length
    return Edns(udp_size, ecs)


def parse_query(data: bytes) -> Query:
    """Header, first question and the OPT record; raises MalformedQuery on junk."""
    if len(data) < 12:
        raise Unanswerable("short packet")
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if qdcount == 0:
        return Query(qid, flags, qdcount, ancount, nscount, arcount)
    labels, offset = _read_labels(data, 12, False)
    if offset + 4 > len(data):
        raise MalformedQuery("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    question = data[12:offset + 4]
    offset += 4
    for _ in range(qdcount - 1):
        _, offset = _read_labels(data, offset, True)
        offset += 4
    for _ in range(ancount + nscount):
        offset = _skip_rr(data, offset)[3]
    edns = None
    for _ in range(arcount):
        rtype, rclass, start, offset = _skip_rr(data, offset)
        if rtype == TYPE_OPT:
            edns = _parse_opt(data, rclass, start, offset)
    return Query(qid, flags, qdcount, ancount, nscount, arcount, tuple(labels), qtype, qclass,
                 question, edns)


def _name_parts(name: str) -> list[tuple[str, bytes]]:
    """(suffix, label wire) for each label of an FQDN, longest suffix first."""
    labels = [label for label in name.split(".") if label]
    return [(".".join(labels[i:]) + ".", bytes([len(labels[i])]) + labels[i].encode("latin-1"))
            for i in range(len(labels))]


_PARTS_CACHE: dict[str, list[tuple[str, bytes]]] = {}


def _cached_parts(name: str) -> list[tuple[str, bytes]]:
    parts = _PARTS_CACHE.get(name)
    if parts is None:
        if len(_PARTS_CACHE) > 100_000:
            _PARTS_CACHE.clear()
        parts = _PARTS_CACHE[name] = _name_parts(name)
    return parts


class _Writer:
    """Appends names and records to a message, compressing like miekg/dns."""

    def __init__(self, prefix: bytes, compress: bool, serial: int) -> None:
        self.out = bytearray(prefix)
        self.compress = compress
        self.serial = serial
        self.offsets: dict[str, int] = {}

    def remember(self, name: str, offset: int) -> None:
        for suffix, wire in _cached_parts(name):
            if offset > _MAX_POINTER:
                return
            self.offsets.setdefault(suffix, offset)
            offset += len(wire)

    def name(self, name: str, may_compress: bool) -> None:
        out = self.out
        for suffix, wire in _cached_parts(name):
            if self.compress:
                pointer = self.offsets.get(suffix)
                if pointer is not None and may_compress:
                    out += struct.pack("!H", 0xC000 | pointer)
                    return
                if pointer is None and len(out) <= _MAX_POINTER:
                    self.offsets[suffix] = len(out)
            out += wire
        out.append(0)

    def record(self, record: Record, qname_wire: bytes) -> None:
        out = self.out
        if record.owner is None:
            out += b"\xc0\x0c" if self.compress else qname_wire
        else:
            self.name(record.owner, True)
        tail = _static_tail(record)
        if tail is not None:
            out += tail
            return
        out += struct.pack("!HHI", record.rtype, record.rclass, record.ttl)
        length_at = len(out)
        out += b"\x00\x00"
        for part in record.rdata:
            if type(part) is bytes:
                out += part
            elif part is SERIAL:
                out += struct.pack("!I", self.serial & 0xFFFFFFFF)
            else:
                self.name(part, not isinstance(part, RawName))
        struct.pack_into("!H", out, length_at, len(out) - length_at - 2)


_TAILS: dict[tuple, bytes | None] = {}


def _static_tail(record: Record) -> bytes | None:
    """Type, class, TTL, length and rdata in wire form when no rdata part is a name."""
    key = (record.rtype, record.rclass, record.ttl, record.rdata)
    try:
        return _TAILS[key]
    except KeyError:
        pass
    tail = None
    if all(type(part) is bytes for part in record.rdata):
        rdata = b"".join(record.rdata)
        tail = struct.pack("!HHIH", record.rtype, record.rclass, record.ttl, len(rdata)) + rdata
    if len(_TAILS) > 100_000:
        _TAILS.clear()
    _TAILS[key] = tail
    return tail


def encode(query: Query, flags: int, rcode: int, sections: Iterable[list[Record]],
           compress: bool, serial: int | None = None, with_question: bool = True) -> bytes:
    """A complete response to query; flags are header bits without the rcode."""
    answer, authority, additional = sections
    question = query.question if with_question else b""
    header = HEADER.pack(query.id, flags | (rcode & 0xF), 1 if question else 0,
                         len(answer), len(authority), len(additional))
    writer = _Writer(header + question, compress, int(time.time()) if serial is None else serial)
    if compress and question:
        writer.remember(query.name, 12)
    qname_wire = question[:-4]
    for section in (answer, authority, additional):
        for record in section:
            writer.record(record, qname_wire)
    return bytes(writer.out)


def header_only(query: Query, flags: int, rcode: int) -> bytes:
    """A reply with no question and no records (miekg's reject path)."""
    return HEADER.pack(query.id, flags | (rcode & 0xF), 0, 0, 0, 0)


def set_tc(message: bytes) -> bytes:
    """The same message with the TC bit set."""
    return message[:2] + bytes([message[2] | (FLAG_TC >> 8)]) + message[3:]
