"""Wire-level fuzzing of a running `consuldns serve` (issue 7: hostile input).

A seeded generator mutates well-formed queries (bit flips, interesting bytes, cuts, splices,
forged counts, compression pointers and loops, extra OPT records, odd opcodes, classes and
types) and mixes in random and oversized packets, over UDP and over TCP (bad framing
included). After every case a well-formed probe must be answered; every reply the fuzz
cases get must carry their ID, have QR set and be readable by dnspython. Counts are printed.
"""

from __future__ import annotations

import random
import socket
import struct
import time

import dns.exception
import dns.message
import dns.rcode

from tests.e2e.client import addresses, ask
from tests.harness import catalogs
from tests.harness import upstream as zone

UDP_CASES = 2500
TCP_CASES = 400
SEED = 20261126
PROBE_NAME = zone.WWW.name

SEED_QUERIES = [
    ("web.service.consul", "A", -1), ("web.service.consul", "AAAA", 0),
    ("web.service.consul", "SRV", 0), ("db.service.consul", "A", -1),
    ("node1.node.consul", "A", 0), ("www.example.test", "A", -1),
    ("many.example.test", "A", 0), ("nx.example.test", "MX", -1),
    ("alias.example.test", "A", 0), ("10.2.0.192.in-addr.arpa", "PTR", -1),
    ("x.notconsul", "TXT", 0), ("version.bind", "TXT", -1), ("big.example.test", "ANY", 0),
]


def seeds() -> list[bytes]:
    out = []
    for name, rdtype, edns in SEED_QUERIES:
        query = dns.message.make_query(name, rdtype, use_edns=edns, want_dnssec=edns == 0)
        out.append(query.to_wire())
    chaos = dns.message.make_query("version.bind", "TXT", "CH")
    out.append(chaos.to_wire())
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        kind = rng.randrange(10)
        position = rng.randrange(max(len(out), 1))
        if kind == 0 and out:
            out[position] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[position] = rng.choice([0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF])
        elif kind == 2:
            del out[position:position + rng.randint(1, 20)]
        elif kind == 3:
            out[position:position] = rng.randbytes(rng.randint(1, 20))
        elif kind == 4 and len(out) >= 12:
            offset = rng.choice([4, 6, 8, 10])
            struct.pack_into("!H", out, offset, rng.choice([0, 1, 2, 3, 0xFFFF]))
        elif kind == 5 and len(out) > 14:
            target = rng.choice([12, position, len(out), 0x3FFF])  # backwards, self, beyond
            out[position:position + 2] = struct.pack("!H", 0xC000 | (target & 0x3FFF))
        elif kind == 6 and len(out) >= 4:
            out[2] = (out[2] & 0x87) | (rng.randrange(16) << 3)  # opcode
        elif kind == 7 and len(out) >= 12:
            out += b"\x00" + struct.pack("!HHIH", 41, rng.randrange(65536),
                                         rng.randrange(2**32), 0)  # another OPT
            struct.pack_into("!H", out, 10, (struct.unpack_from("!H", out, 10)[0] + 1) & 0xFFFF)
        elif kind == 8 and len(out) > 16:
            struct.pack_into("!HH", out, len(out) - 4, rng.choice([0, 41, 251, 252, 255,
                                                                   rng.randrange(65536)]),
                             rng.choice([1, 3, 254, 255, rng.randrange(65536)]))
        elif kind == 9 and out:
            out[position] = rng.randrange(64)  # a label length that lies
    return bytes(out)


def cases(rng: random.Random, count: int) -> list[bytes]:
    base = seeds()
    out = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.8:
            out.append(mutate(rng, rng.choice(base)))
        elif roll < 0.95:
            out.append(rng.randbytes(rng.randint(0, 120)))
        else:
            out.append(rng.choice(base)[:2] + rng.randbytes(rng.choice([600, 4095, 4100,
                                                                         9000])))
    return out


class Checker:
    """Sends cases and probes; validates every datagram that comes back."""

    def __init__(self, server) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((server.host, server.port))
        self.probe = dns.message.make_query(PROBE_NAME, "A")
        self.case_ids: set[int] = set()
        self.replies = 0
        self.probes = 0
        self.bad: list[str] = []

    def send_case(self, data: bytes) -> None:
        if len(data) >= 2:
            self.case_ids.add(struct.unpack_from("!H", data)[0])
        try:
            self.sock.send(data)
        except OSError as exc:  # e.g. EMSGSIZE: never sent, nothing to check
            self.bad.append(f"send failed: {exc}") if len(data) < 65000 else None

    def check_probe(self, label: str, timeout: float = 2.0) -> None:
        """The probe is answered (correctly, from the cache) before the deadline."""
        self.probe.id = (self.probe.id + 1) % 65536
        self.sock.send(self.probe.to_wire())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                break
            if self._is_probe_reply(data):
                self.probes += 1
                return
            self._check_case_reply(data)
        raise AssertionError(f"no answer to the probe after {label}")

    def _is_probe_reply(self, data: bytes) -> bool:
        try:
            message = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            return False
        if message.id != self.probe.id or not message.question:
            return False
        if message.question[0].name.to_text().lower() != PROBE_NAME:
            return False
        assert addresses(message) == list(zone.WWW.values), message
        return True

    def _check_case_reply(self, data: bytes) -> None:
        self.replies += 1
        problem = None
        if len(data) < 12 or not data[2] & 0x80:
            problem = "not a response"
        elif struct.unpack_from("!H", data)[0] not in self.case_ids:
            problem = "an ID no case had"
        else:
            try:
                dns.message.from_wire(data)
            except (dns.exception.DNSException, ValueError) as exc:
                problem = f"unreadable: {exc!r}"
        if problem:
            self.bad.append(f"{problem}: {data[:64].hex()}")

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sock.settimeout(max(end - time.monotonic(), 0.01))
            try:
                self._check_case_reply(self.sock.recv(65535))
            except TimeoutError:
                return


def tcp_case(server, rng: random.Random, data: bytes) -> None:
    """One TCP connection: a case framed honestly, with a lying length, split, or several."""
    framing = rng.randrange(5)
    if framing == 0:
        payload = struct.pack("!H", len(data)) + data
    elif framing == 1:
        payload = struct.pack("!H", rng.randrange(65536)) + data
    elif framing == 2:
        payload = struct.pack("!H", 0) + data
    elif framing == 3:
        payload = b"".join(struct.pack("!H", len(d)) + d for d in (data, data, seeds()[0]))
    else:
        payload = data[:1]
    with socket.create_connection((server.host, server.port), timeout=2) as conn:
        try:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(0.05)
            while conn.recv(65535):
                pass
        except OSError:
            pass


def test_running_server_survives_the_wire_fuzz(consuldns_server, capsys):
    server = consuldns_server()
    assert addresses(ask(server, PROBE_NAME)) == list(zone.WWW.values)  # the probe is cached
    rng = random.Random(SEED)
    checker = Checker(server)
    started = time.monotonic()
    for index, data in enumerate(cases(rng, UDP_CASES)):
        checker.send_case(data)
        checker.check_probe(f"UDP case {index} ({data[:40].hex()})")
    tcp_count = 0
    for index, data in enumerate(cases(rng, TCP_CASES)):
        tcp_case(server, rng, data)
        tcp_count += 1
        checker.check_probe(f"TCP case {index} ({data[:40].hex()})")
        if index % 20 == 0:
            assert addresses(ask(server, PROBE_NAME, tcp=True)) == list(zone.WWW.values)
    checker.drain(2.5)  # late replies (cases that went upstream) are checked too
    elapsed = time.monotonic() - started
    assert server.alive()
    assert checker.bad == [], checker.bad[:10]
    assert sorted(addresses(ask(server, "web.service.consul"))) == sorted(catalogs.WEB_HEALTHY)
    assert ask(server, zone.NX_NAME).rcode() == dns.rcode.NXDOMAIN
    with capsys.disabled():
        print(f"\nwire fuzz: {UDP_CASES} UDP + {tcp_count} TCP cases, {checker.probes} probes "
              f"answered, {checker.replies} case replies checked, {elapsed:.1f} s")
    assert checker.probes == UDP_CASES + TCP_CASES
