"""Real upstream resolvers for the topology: unbound (and dnsmasq) serving a test zone only.

Neither may ever resolve beyond its own zone: unbound answers every name from local zones
(`local-zone: "." static`) and, as a second fence, forwards anything else to a dead loopback
port; dnsmasq runs with --no-resolv and no server= lines.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.harness.ports import split_address
from tests.harness.procs import HOST, Place, Server, dns_ready, launch

UNBOUND = "/usr/sbin/unbound"
DNSMASQ = "/usr/sbin/dnsmasq"


@dataclass(frozen=True)
class Rrset:
    """One RRset of the test zone; `values` are rdata as dnspython's to_text() writes them."""

    name: str
    rdtype: str
    ttl: int
    values: tuple[str, ...]

    def lines(self) -> list[str]:
        return [f"{self.name} {self.ttl} IN {self.rdtype} {value}" for value in self.values]


ZONE = "example.test."
SOA_TTL = 300
SOA_MINIMUM = 60
SOA = Rrset(
    ZONE, "SOA", SOA_TTL, (f"ns.{ZONE} hostmaster.{ZONE} 2024010101 3600 900 604800 {SOA_MINIMUM}",)
)
NS = Rrset(ZONE, "NS", 3600, (f"ns.{ZONE}",))
NS_A = Rrset(f"ns.{ZONE}", "A", 3600, ("192.0.2.53",))

WWW = Rrset(f"www.{ZONE}", "A", 3600, ("192.0.2.10",))
SHORT = Rrset(f"short.{ZONE}", "A", 2, ("192.0.2.20",))
MULTI = Rrset(f"multi.{ZONE}", "A", 300, tuple(f"198.51.100.{i}" for i in range(1, 7)))
V6 = Rrset(f"v6.{ZONE}", "AAAA", 300, ("2001:db8::6",))
DUAL_A = Rrset(f"dual.{ZONE}", "A", 300, ("192.0.2.30",))
DUAL_AAAA = Rrset(f"dual.{ZONE}", "AAAA", 300, ("2001:db8::30",))
ALIAS = Rrset(f"alias.{ZONE}", "CNAME", 300, (f"alias2.{ZONE}",))
ALIAS2 = Rrset(f"alias2.{ZONE}", "CNAME", 300, (f"www.{ZONE}",))
# The answer to alias A, in order: the chain first, then the target's addresses.
ALIAS_CHAIN = (ALIAS, ALIAS2, WWW)
# 10 strings of 200 characters: ~2 KB, beyond 512 bytes and the 1232-byte EDNS default,
# so the full answer only comes over TCP.
BIG = Rrset(
    f"big.{ZONE}", "TXT", 300, (" ".join(f'"{i:02d}{chr(97 + i) * 198}"' for i in range(10)),)
)
# 40 addresses: ~700 bytes, too big for a 512-byte UDP reply without EDNS.
MANY = Rrset(f"many.{ZONE}", "A", 300, tuple(f"203.0.113.{i}" for i in range(1, 41)))
MX = Rrset(ZONE, "MX", 300, (f"10 mx1.{ZONE}", f"20 mx2.{ZONE}"))
MX1_A = Rrset(f"mx1.{ZONE}", "A", 300, ("192.0.2.25",))
MX2_A = Rrset(f"mx2.{ZONE}", "A", 300, ("192.0.2.26",))

REVERSE_ZONE = "2.0.192.in-addr.arpa."
PTR = Rrset(f"10.{REVERSE_ZONE}", "PTR", 300, (WWW.name,))

NX_NAME = f"nx.{ZONE}"  # absent: NXDOMAIN with SOA
NODATA_NAME, NODATA_TYPE = WWW.name, "AAAA"  # name exists, type does not: NOERROR + SOA
# RFC 2308: the SOA in a negative answer carries min(SOA TTL, SOA MINIMUM).
NEGATIVE_TTL = min(SOA_TTL, SOA_MINIMUM)

ZONE_RRSETS = (
    SOA, NS, NS_A, WWW, SHORT, MULTI, V6, DUAL_A, DUAL_AAAA, ALIAS, ALIAS2, BIG, MANY, MX,
    MX1_A, MX2_A,
)
# Every (name, type) -> Rrset a direct query returns (CNAME chains are in ALIAS_CHAIN).
BY_QUESTION = {(r.name, r.rdtype): r for r in (*ZONE_RRSETS, PTR)}

# dnsmasq's smaller zone (host-record / cname / txt-record).
DNSMASQ_WWW = Rrset(f"www.{ZONE}", "A", 3600, ("192.0.2.10",))
DNSMASQ_ALIAS = Rrset(f"alias.{ZONE}", "CNAME", 300, (DNSMASQ_WWW.name,))
DNSMASQ_TXT = Rrset(f"txt.{ZONE}", "TXT", 300, ('"hello from dnsmasq"',))
DNSMASQ_LOCAL_TTL = 300


def zone_file() -> str:
    """The example.test. zone in master-file format, from ZONE_RRSETS."""
    lines = [line for rrset in ZONE_RRSETS for line in rrset.lines()]
    return "\n".join(lines) + "\n"


def unbound_server_basics(host: str, port: int, workdir: Path, verbosity: int = 0) -> list[str]:
    """The `server:` lines every unbound here shares: one thread on one loopback address, no
    chroot or privilege drop, files under workdir, iterator only, loopback clients."""
    return [
        f"interface: {host}@{port}",
        f"port: {port}",
        "interface-automatic: no",
        "so-reuseport: no",
        "num-threads: 1",
        'chroot: ""',
        'username: ""',
        f'directory: "{workdir}"',
        f'pidfile: "{workdir / "unbound.pid"}"',
        'logfile: ""',
        "use-syslog: no",
        f"verbosity: {verbosity}",
        'module-config: "iterator"',
        "do-not-query-localhost: no",
        "access-control: 127.0.0.0/8 allow",
    ]


def unbound_config(
    host: str, port: int, workdir: Path, others: str = "static", extra: str = ""
) -> str:
    """unbound.conf for the test zone. `others`: local-zone type for every other name
    ("static" -> NXDOMAIN, "refuse" -> REFUSED)."""
    server = [
        *unbound_server_basics(host, port, workdir, verbosity=1),
        "log-time-ascii: yes",
        "access-control: ::1 allow",
        f'local-zone: "." {others}',
        # transparent: fall through to the auth-zone below, which (unlike local-data) follows
        # the CNAME chain inside the zone the way an authoritative server does.
        f'local-zone: "{ZONE}" transparent',
        f'local-zone: "{REVERSE_ZONE}" static',
        *(f"local-data: '{line}'" for line in PTR.lines()),
    ]
    lines = ["server:", *(f"    {item}" for item in server)]
    if extra:
        lines += [f"    {item}" for item in extra.strip().splitlines()]
    lines += [
        "auth-zone:",
        f'    name: "{ZONE}"',
        f'    zonefile: "{workdir / "example.test.zone"}"',
        "    for-downstream: yes",
        "    for-upstream: yes",
        "    fallback-enabled: no",
        "remote-control:",
        "    control-enable: no",
        # Second fence: should a query ever miss the local zones, it goes to the discard port
        # on loopback, never to root servers.
        "forward-zone:",
        '    name: "."',
        "    forward-addr: 127.0.0.1@9",
    ]
    return "\n".join(lines) + "\n"


def start_unbound(
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    others: str = "static",
    extra: str = "",
    place: Place = HOST,
    timeout: float = 10.0,
) -> Server:
    """Start unbound in the foreground serving the example.test. zone; wait until it answers."""
    require_binary(UNBOUND, "unbound")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "unbound.conf"

    def build(chosen: int) -> list[str]:
        (workdir / "example.test.zone").write_text(zone_file())
        conf.write_text(unbound_config(host, chosen, workdir, others, extra))
        return [UNBOUND, "-d", "-c", str(conf)]

    ready = dns_ready(host, WWW.name, timeout)
    proc, chosen = launch("unbound", build, workdir, host=host, port=port, ready=ready, place=place)
    return Server(proc, host, chosen, workdir)


def _dnsmasq_base(host: str, port: int, workdir: Path) -> list[str]:
    args = [
        DNSMASQ,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        f"--port={port}",
        f"--listen-address={host}",
        "--bind-interfaces",
        f"--pid-file={workdir / 'dnsmasq.pid'}",
        "--log-facility=-",
    ]
    if os.geteuid() == 0:
        # As root dnsmasq drops to "nobody", which cannot write the pid file in a 0700 tmp dir.
        args.append("--user=root")
    return args


def dnsmasq_zone_args() -> list[str]:
    """dnsmasq options serving the small DNSMASQ_* zone; other example.test names NXDOMAIN."""
    return [
        f"--local=/{ZONE.rstrip('.')}/",
        f"--local-ttl={DNSMASQ_LOCAL_TTL}",
        f"--host-record={DNSMASQ_WWW.name.rstrip('.')},{DNSMASQ_WWW.values[0]},{DNSMASQ_WWW.ttl}",
        f"--cname={DNSMASQ_ALIAS.name.rstrip('.')},{DNSMASQ_WWW.name.rstrip('.')},"
        f"{DNSMASQ_ALIAS.ttl}",
        f"--txt-record={DNSMASQ_TXT.name.rstrip('.')},{DNSMASQ_TXT.values[0].strip(chr(34))}",
    ]


def start_dnsmasq(
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
    place: Place = HOST,
    timeout: float = 10.0,
) -> Server:
    """Start dnsmasq as an authoritative-ish server of the small DNSMASQ_* zone."""
    require_binary(DNSMASQ, "dnsmasq-base")
    workdir.mkdir(parents=True, exist_ok=True)

    def build(chosen: int) -> list[str]:
        return [*_dnsmasq_base(host, chosen, workdir), *dnsmasq_zone_args(), *extra_args]

    ready = dns_ready(host, DNSMASQ_WWW.name, timeout)
    proc, chosen = launch("dnsmasq", build, workdir, host=host, port=port, ready=ready, place=place)
    return Server(proc, host, chosen, workdir)


def start_dnsmasq_forwarder(
    port: int | None,
    upstream_addr: str,
    consul_addr: str,
    cache_size: int = 150,
    *,
    workdir: Path | None = None,
    host: str = "127.0.0.1",
    domain: str = "consul",
    extra_args: tuple[str, ...] = (),
    place: Place = HOST,
    timeout: float = 10.0,
) -> Server:
    """Start dnsmasq the way hosts run it in front of Consul: `domain` to the agent, the rest
    to `upstream_addr` (both HOST:PORT). The baseline the benchmarks compare consuldns with."""
    require_binary(DNSMASQ, "dnsmasq-base")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="dnsmasq-fwd-"))
    workdir.mkdir(parents=True, exist_ok=True)
    consul = _dnsmasq_server(consul_addr)
    upstream = _dnsmasq_server(upstream_addr)

    def build(chosen: int) -> list[str]:
        return [
            *_dnsmasq_base(host, chosen, workdir),
            f"--cache-size={cache_size}",
            f"--server=/{domain}/{consul}",
            f"--server={upstream}",
            *extra_args,
        ]

    ready = dns_ready(host, "readiness.invalid.", timeout)
    proc, chosen = launch("dnsmasq", build, workdir, host=host, port=port, ready=ready, place=place)
    return Server(proc, host, chosen, workdir)


def _dnsmasq_server(address: str) -> str:
    host, port = split_address(address)
    return f"{host}#{port}"


def require_binary(path: str, package: str) -> None:
    """Fail with the package to install when a server binary is missing."""
    if not (os.path.exists(path) or shutil.which(path)):
        raise FileNotFoundError(f"{path} not found: install the Debian package {package!r}")
