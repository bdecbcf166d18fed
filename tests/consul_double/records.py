"""Resource records as the encoder needs them: owner, type, TTL and rdata parts."""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from dnslib import AAAA, A, DNSBuffer

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_OPT = 41
TYPE_DS = 43
TYPE_AXFR = 252
TYPE_ANY = 255


class Name(str):
    """A domain name inside rdata that may be compressed (NS, CNAME, PTR, SOA)."""


class RawName(str):
    """A domain name inside rdata that is never compressed (SRV target, RFC 2782)."""


class Serial:
    """Placeholder for the SOA serial, filled with the Unix time when encoding."""


SERIAL = Serial()


class Record(NamedTuple):
    """One RR; owner None means the question name exactly as the client sent it."""

    owner: str | None
    rtype: int
    ttl: int
    rdata: tuple
    rclass: int = 1

    def target(self) -> str | None:
        """The name an SRV or CNAME record points at."""
        if self.rtype in (TYPE_SRV, TYPE_CNAME):
            return str(self.rdata[-1])
        return None


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in text, or None for hostnames and empty strings (Go's net.ParseIP)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _rdata(rdata_obj: object) -> bytes:
    buffer = DNSBuffer()
    rdata_obj.pack(buffer)  # type: ignore[attr-defined]
    return bytes(buffer.data)


def address_record(owner: str | None, ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                   ttl: int) -> Record:
    """An A record for IPv4, AAAA for IPv6."""
    if ip.version == 4:
        return Record(owner, TYPE_A, ttl, (_rdata(A(str(ip))),))
    return Record(owner, TYPE_AAAA, ttl, (_rdata(AAAA(str(ip))),))


def srv_record(owner: str | None, weight: int, port: int, target: str, ttl: int) -> Record:
    """SRV with Consul's fixed priority 1."""
    fixed = struct.pack("!HHH", 1, weight & 0xFFFF, port & 0xFFFF)
    return Record(owner, TYPE_SRV, ttl, (fixed, RawName(target)))


def txt_record(owner: str | None, text: str, ttl: int) -> Record:
    """TXT with one string, split into 255-byte character-strings when longer."""
    data = text.encode("utf-8")
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return Record(owner, TYPE_TXT, ttl, (b"".join(bytes([len(c)]) + c for c in chunks),))


def ptr_record(owner: str | None, target: str, ttl: int = 0) -> Record:
    return Record(owner, TYPE_PTR, ttl, (Name(target),))


def ns_record(owner: str, target: str, ttl: int) -> Record:
    return Record(owner, TYPE_NS, ttl, (Name(target),))


def cname_record(owner: str | None, target: str, ttl: int) -> Record:
    return Record(owner, TYPE_CNAME, ttl, (Name(target),))


def soa_record(zone: str, mbox_user: str, refresh: int, retry: int, expire: int,
               min_ttl: int) -> Record:
    """The zone's SOA; its own TTL is the minimum, as Consul sets it."""
    tail = struct.pack("!IIII", refresh, retry, expire, min_ttl)
    rdata = (Name("ns." + zone), Name(f"{mbox_user}.{zone}"), SERIAL, tail)
    return Record(zone, TYPE_SOA, min_ttl, rdata)


def opt_record(udp_size: int, options: bytes = b"") -> Record:
    """The EDNS0 OPT pseudo-RR: class carries the UDP size, TTL the flags (all zero)."""
    return Record(".", TYPE_OPT, 0, (options,) if options else (), udp_size)


def encode_rfc1464(key: str, value: str) -> str:
    """key=value with RFC 1464 quoting, as Consul writes node meta."""
    key = key.replace("`", "``").replace("=", "`=")
    stripped = key.lstrip(" ")
    key = "` " * (len(key) - len(stripped)) + stripped
    stripped = key.rstrip(" ")
    key = stripped + "` " * (len(key) - len(stripped))
    return key + "=" + value.replace("`", "``")


def meta_txt_records(owner: str | None, meta: dict[str, str], ttl: int) -> list[Record]:
    """Node meta as TXT; keys prefixed rfc1035- give the bare value."""
    records = []
    for key, value in meta.items():
        text = value if key.lower().startswith("rfc1035-") else encode_rfc1464(key, value)
        records.append(txt_record(owner, text, ttl))
    return records
