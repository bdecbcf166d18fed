"""Every record type dnspython knows, through consuldns and back (issue 13, wire correctness).

A differential test: an upstream reply holding a sample rdata of each type (its names
compressed wherever consuldns claims to decompress them) goes through wire.parse_reply ->
template.render -> shape.build, and dnspython must read back the same rdata. A second test
makes sure no type with names inside its rdata is forgotten: it is either in
wire.NAME_LAYOUTS or named below as never compressed by its specification.
"""

from __future__ import annotations

import base64
import struct

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from consuldns.dns import shape, wire
from consuldns.dns.template import render
from consuldns.errors import MalformedPacket
from tests.unit.helpers import query_bytes

OWNER = "host.example."
TTL = 300
KEY = base64.b64encode(bytes(range(3, 99))).decode()  # any key or signature octets
DIGEST = "2BB183AF5F22588179A53B0A98631FAD1A292118"
SHA256 = "0123456789abcdef" * 4

# One presentation-format rdata per type dnspython implements. No name in one rdata is a
# suffix of another (the encoder below finds names in the rdata by their octets), none is
# the root, and every name shares the suffix `example.` with the owner, so compressed names
# can point back into the question.
SAMPLES = {
    "A": "192.0.2.1",
    "NS": "ns1.example.",
    "CNAME": "cname-target.example.",
    "SOA": "ns1.example. hostmaster.example. 2024010101 3600 600 86400 60",
    "WKS": "192.0.2.1 6 25 80",
    "PTR": "ptr-target.example.",
    "HINFO": '"cpu" "os"',
    "MX": "10 mail.example.",
    "TXT": '"hello" "world"',
    "RP": "admin.example. info.example.",
    "AFSDB": "1 afs.example.",
    "X25": '"311061700956"',
    "ISDN": '"150862028003217" "004"',
    "RT": "10 relay.example.",
    "NSAP": "0x47000580005a0000000001e133ffffff00016100",
    "NSAP_PTR": "nsap.example.",
    "SIG": f"A 8 2 3600 20300101000000 20200101000000 2143 sig-signer.example. {KEY}",
    "KEY": f"256 3 8 {KEY}",
    "PX": "10 map822.example. mapx400.example.",
    "GPOS": "-22.6882 116.8652 250.0",
    "AAAA": "2001:db8::1",
    "LOC": "60 9 0.000 N 24 39 0.000 E 10.00m 20.00m 2000.00m 20.00m",
    "SRV": "0 5 5060 sip.example.",
    "NAPTR": '100 10 "U" "E2U+sip" "!^.*$!sip:info@example.test!" naptr-target.example.',
    "KX": "10 kx.example.",
    "CERT": f"PKIX 65535 RSASHA256 {KEY}",
    "DNAME": "dname-target.example.",
    "APL": "1:192.168.32.0/21 !1:192.168.38.0/28",
    "DS": f"60485 5 1 {DIGEST}",
    "SSHFP": "1 1 aa549bfe898489c02d1715d97d79c57ba2fa76ab",
    "IPSECKEY": f"10 3 2 gateway.example. {KEY}",
    "RRSIG": f"A 8 2 3600 20300101000000 20200101000000 2143 rrsig-signer.example. {KEY}",
    "NSEC": "next.example. A MX RRSIG NSEC",
    "DNSKEY": f"257 3 8 {KEY}",
    "DHCID": "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
    "NSEC3": "1 1 12 aabbccdd 2t7b4g4vsa5smi47k61mv5bv1a22bojr A RRSIG",
    "NSEC3PARAM": "1 0 12 aabbccdd",
    "TLSA": f"3 1 1 {SHA256}",
    "SMIMEA": f"3 1 1 {SHA256}",
    "HIP": f"2 200100107B1A74DF365639CC39F1D578 {KEY} rvs1.example. rvs2.example.",
    "NINFO": '"some info"',
    "CDS": f"60485 5 1 {DIGEST}",
    "CDNSKEY": f"257 3 8 {KEY}",
    "OPENPGPKEY": KEY,
    "CSYNC": "66 3 A NS AAAA",
    "ZONEMD": f"2018031500 1 1 {SHA256}{SHA256[:32]}",
    "SVCB": '1 svc.example. alpn="h2,h3" port=8443',
    "HTTPS": "1 https-target.example. alpn=h2",
    "DSYNC": "CDS 1 5359 dsync.example.",
    "HHIT": KEY,
    "BRID": KEY,
    "SPF": '"v=spf1 -all"',
    "NID": "10 0014:4fff:ff20:ee64",
    "L32": "10 10.1.2.0",
    "L64": "10 2001:0db8:1140:1000",
    "LP": "10 lp.example.",
    "EUI48": "00-00-5e-00-53-2a",
    "EUI64": "00-00-5e-ef-10-00-00-2a",
    "URI": '10 1 "ftp://ftp1.example.com/public"',
    "CAA": '0 issue "ca.example.net"',
    "AVC": '"app-name:WOLFGANG|app-class:OAM"',
    "AMTRELAY": "0 0 3 amt.example.",
    "RESINFO": '"qnamemin" "exterr=15,16,17"',
    "WALLET": '"BTC" "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"',
    "DLV": f"60485 5 1 {DIGEST}",
}


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


# Types dnspython reads as opaque bytes (no rdata class): their rdata as wire parts, names as
# dns.name.Name, so this test knows where their names are.
OPAQUE_SAMPLES: dict[str, tuple[dns.name.Name | bytes, ...]] = {
    "TYPE0": (b"\x00\x01",),
    "MD": (_name("md.example."),),
    "MF": (_name("mf.example."),),
    "MB": (_name("mail.example."),),
    "MG": (_name("group-member.example."),),
    "MR": (_name("renamed.example."),),
    "NULL": (b"anything at all",),
    "MINFO": (_name("rmailbx.example."), _name("emailbx.example.")),
    "NXT": (_name("nxt-next.example."), bytes.fromhex("40010000000000000000000000000001")),
    "A6": (b"\x40" + bytes.fromhex("0000000000000001"), _name("a6-prefix.example.")),
    "UNSPEC": (b"\x01\x02\x03",),
    "TA": (struct.pack("!HBB", 60485, 5, 1) + bytes.fromhex(DIGEST),),
}

# Types whose rdata holds names that may not be compressed: consuldns copies their rdata as it
# is. RFC 3597 §4 lets only the RFC 1035 types be compressed (and asks readers to decompress
# RP, AFSDB, RT, SIG, PX, NXT, NAPTR and SRV too); every other type's names must not be.
NEVER_COMPRESSED = {
    "RRSIG": "RFC 4034 §3.1.7",
    "NSEC": "RFC 4034 §4.1.1",
    "IPSECKEY": "RFC 4025",
    "HIP": "RFC 8005",
    "SVCB": "RFC 9460",
    "HTTPS": "RFC 9460",
    "AMTRELAY": "RFC 8777",
    "KX": "RFC 3597 §4 (not listed)",
    "NSAP_PTR": "RFC 3597 §4 (not listed)",
    "A6": "RFC 3597 §4 (not listed)",
    "LP": "RFC 3597 §4 (a later type)",
    "DSYNC": "RFC 3597 §4 (a later type)",
}

# dnspython refuses a compressed DNAME target (DNAME is not in RFC 3597's list); consuldns has
# always read one leniently, and sends it uncompressed.
DNSPYTHON_REFUSES_COMPRESSED = {"DNAME"}


def known_types() -> list[dns.rdatatype.RdataType]:
    """Every data type dnspython knows (meta types such as OPT, TSIG and AXFR are no data)."""
    return [t for t in dns.rdatatype.RdataType if not dns.rdatatype.is_metatype(t)]


def sample(rdtype: dns.rdatatype.RdataType) -> tuple[dns.rdata.Rdata, list[bytes]]:
    """The sample rdata of a type and the wire forms of the names inside it."""
    if rdtype.name in OPAQUE_SAMPLES:
        parts = OPAQUE_SAMPLES[rdtype.name]
        data = b"".join(p.to_wire() if isinstance(p, dns.name.Name) else p for p in parts)
        rdata = dns.rdata.GenericRdata(dns.rdataclass.IN, rdtype, data)
        return rdata, [p.to_wire() for p in parts if isinstance(p, dns.name.Name)]
    rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, SAMPLES[rdtype.name])
    return rdata, [name.to_wire() for name in _names_in(rdata)]


def _names_in(rdata: dns.rdata.Rdata) -> list[dns.name.Name]:
    names = []
    for slot in dict.fromkeys(rdata._get_all_slots()):  # a slot may be declared twice
        value = getattr(rdata, slot, None)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, dns.name.Name):
                names.append(item)
    return names


# ---------------------------------------------------------------- a compressing encoder


class Compressor:
    """Writes names with pointers to any earlier occurrence of a suffix (RFC 1035 §4.1.4)."""

    def __init__(self) -> None:
        self.targets: dict[bytes, int] = {}

    def register(self, name: bytes, offset: int, written: int) -> None:
        position = 0
        while position < written and name[position]:
            self.targets.setdefault(name[position:].lower(), offset + position)
            position += name[position] + 1

    def write(self, name: bytes, offset: int) -> bytes:
        position = 0
        while name[position]:
            target = self.targets.get(name[position:].lower())
            if target is not None:
                self.register(name, offset, position)
                return name[:position] + struct.pack("!H", 0xC000 | target)
            position += name[position] + 1
        self.register(name, offset, len(name))
        return name


def compress_rdata(raw: bytes, names: list[bytes], compressor: Compressor, offset: int) -> bytes:
    """raw (uncompressed rdata at message offset `offset`) with each name compressed."""
    out = b""
    cursor = 0
    for name in sorted(names, key=raw.find):
        found = raw.find(name, cursor)
        assert found >= 0, "a sample's names must appear in its rdata in order"
        out += raw[cursor:found]
        out += compressor.write(name, offset + len(out))
        cursor = found + len(name)
    return out + raw[cursor:]


def upstream_reply(rdata: dns.rdata.Rdata, names: list[bytes], compress: bool) -> bytes:
    """A reply to OWNER/type holding the rdata twice (answer, then authority); when
    `compress`, the names inside the rdata are compressed.

    Pointers target the first owner name, written in full, and earlier rdata: consuldns writes
    its reply with other offsets (its owners are pointers to the question), so a pointer it
    copied unchanged would point at the wrong octets.
    """
    qname = _name(OWNER).to_wire()
    message = struct.pack("!HHHHHH", 4242, 0x8180, 1, 1, 1, 0) + qname
    message += struct.pack("!HH", rdata.rdtype, 1)
    compressor = Compressor()
    raw = rdata.to_wire()
    for _ in range(2):
        message += compressor.write(qname, len(message))
        message += struct.pack("!HHI", rdata.rdtype, 1, TTL)
        data = compress_rdata(raw, names, compressor, len(message) + 2) if compress else raw
        message += struct.pack("!H", len(data)) + data
    return message


def through_consuldns(upstream: bytes, rdtype: int) -> dns.message.Message:
    """What a client reads after consuldns parsed, rendered and shaped the upstream reply."""
    reply = wire.parse_reply(upstream)
    query = wire.parse_query(query_bytes(OWNER, dns.rdatatype.to_text(rdtype), edns=0))
    template = render(reply, query.qname, [r.ttl for r in reply.records])
    sent = shape.build(template, template.body, query, 0, max_udp=1232)
    return dns.message.from_wire(sent)


def has_layout(rdtype: int) -> bool:
    return rdtype in wire.NAME_LAYOUTS


# ---------------------------------------------------------------- the tests


def test_every_known_type_has_a_sample():
    names = {t.name for t in known_types()}
    assert names == set(SAMPLES) | set(OPAQUE_SAMPLES)
    assert not set(SAMPLES) & set(OPAQUE_SAMPLES)


@pytest.mark.parametrize("rdtype", known_types(), ids=lambda t: t.name)
def test_a_type_with_names_is_decompressed_or_never_compressed_by_spec(rdtype):
    _, names = sample(rdtype)
    if not names:
        assert not has_layout(rdtype), "a layout for a type without names"
        return
    assert has_layout(rdtype) != (rdtype.name in NEVER_COMPRESSED), (
        f"{rdtype.name} holds names: give it a layout in wire.NAME_LAYOUTS, or list it in "
        "NEVER_COMPRESSED with the specification that forbids compressing it")


def may_be_compressed(rdtype: dns.rdatatype.RdataType) -> bool:
    return bool(sample(rdtype)[1]) and rdtype.name not in NEVER_COMPRESSED


CASES = [pytest.param(t, compress, id=f"{t.name}-{'compressed' if compress else 'plain'}")
         for t in known_types() for compress in (False, True)
         if not compress or may_be_compressed(t)]


@pytest.mark.parametrize("rdtype,compressed", CASES)
def test_consuldns_passes_every_rdata_on_unchanged(rdtype, compressed):
    rdata, names = sample(rdtype)
    upstream = upstream_reply(rdata, names, compressed)
    if not isinstance(rdata, dns.rdata.GenericRdata) and not (
            compressed and rdtype.name in DNSPYTHON_REFUSES_COMPRESSED):
        # The encoder is right: dnspython reads the reply it made as the sample.
        assert dns.message.from_wire(upstream).answer[0][0] == rdata
    message = through_consuldns(upstream, rdtype)
    assert [rrset[0] for rrset in message.answer] == [rdata]
    assert [rrset[0] for rrset in message.authority] == [rdata]


def test_the_encoder_compresses_names_inside_rdata():
    rdata, names = sample(dns.rdatatype.RP)
    compressed = upstream_reply(rdata, names, compress=True)
    # The authority copy of the RP: RDLENGTH 4, both names bare pointers to the answer's copy.
    assert compressed[-6:-4] == b"\x00\x04"
    assert compressed[-4] >= 0xC0 and compressed[-2] >= 0xC0


LAYOUT_CASES = [t for t in known_types() if has_layout(t)]


@pytest.mark.parametrize("rdtype", LAYOUT_CASES, ids=lambda t: t.name)
def test_rdata_shorter_than_its_layout_is_malformed(rdtype):
    rdata, names = sample(rdtype)
    raw = rdata.to_wire()
    last_name_end = max(raw.find(name) + len(name) for name in names)
    with pytest.raises(MalformedPacket):
        wire.parse_reply(_single_record(rdtype, raw[:last_name_end - 1]))


@pytest.mark.parametrize("rdtype", [t for t in LAYOUT_CASES
                                    if wire.NAME_LAYOUTS[t][-1] != wire.REST],
                         ids=lambda t: t.name)
def test_rdata_longer_than_its_layout_is_malformed(rdtype):
    rdata, _ = sample(rdtype)
    with pytest.raises(MalformedPacket):
        wire.parse_reply(_single_record(rdtype, rdata.to_wire() + b"\x00"))


def test_character_string_running_past_the_rdata_is_malformed():
    raw = bytearray(sample(dns.rdatatype.NAPTR)[0].to_wire())
    raw[4] = 200  # the flags string claims 200 octets
    with pytest.raises(MalformedPacket):
        wire.parse_reply(_single_record(dns.rdatatype.NAPTR, bytes(raw)))


def _single_record(rdtype: int, rdata: bytes) -> bytes:
    """A reply with one answer record of the given rdata, followed by an A record (so a name
    that runs past its rdata still finds octets to read)."""
    header = struct.pack("!HHHHHH", 1, 0x8180, 1, 2, 0, 0)
    question = _name(OWNER).to_wire() + struct.pack("!HH", rdtype, 1)
    record = b"\xc0\x0c" + struct.pack("!HHIH", rdtype, 1, TTL, len(rdata)) + rdata
    address = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, TTL, 4) + bytes([192, 0, 2, 1])
    return header + question + record + address
