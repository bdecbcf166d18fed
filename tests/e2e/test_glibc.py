"""glibc's getaddrinfo (`getent ahosts`) through consuldns on 127.0.0.1:53 (issue 7).

Everything runs inside one network namespace (unbound on :5353, the Consul double on :8600,
consuldns on :53); each client gets its own resolv.conf bind-mounted in a private mount
namespace, so the machine's /etc is never touched (tests/harness/netns.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.harness import catalogs
from tests.harness import upstream as zone
from tests.harness.missing import unavailable
from tests.harness.netns import Netns, NetnsUnavailable, parse_ahosts
from tests.harness.topology import NetnsTopology, start_netns_topology

pytestmark = pytest.mark.netns

BIG = "big.service.consul"
BIG_ADDRESSES = tuple(f"127.1.0.{i}" for i in range(1, 41))
RESOLVER_TIMEOUT = 2  # seconds glibc waits for a reply before it gives up on a query
RESOLV = (f"nameserver 127.0.0.1\noptions timeout:{RESOLVER_TIMEOUT} attempts:1{{options}}\n"
          "{search}")


def big_catalog() -> dict:
    """The default catalog plus a 40-instance service (700 bytes of A records)."""
    catalog = catalogs.default_catalog()
    for i, address in enumerate(BIG_ADDRESSES):
        catalog["nodes"].append({"name": f"big{i}", "address": address, "meta": {},
                                 "checks": []})
        catalog["services"].append({"id": f"big-{i}", "name": "big", "node": f"big{i}",
                                    "address": "", "port": 80, "tags": [], "checks": []})
    return catalog


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsTopology]:
    """One namespace for the module: the clients below only read."""
    workdir = tmp_path_factory.mktemp("glibc")
    try:
        netns = Netns.create(workdir / "netns")
    except NetnsUnavailable as exc:
        unavailable(str(exc))
    (workdir / "netns").mkdir(exist_ok=True)
    try:
        yield start_netns_topology(netns, workdir / "topology", catalog=big_catalog())
    finally:
        netns.delete()


def getent(topology: NetnsTopology, name: str, options: str = "",
           search: str = "") -> tuple[int, dict[str, set[str]], float]:
    resolv = RESOLV.format(options=f" {options}" if options else "",
                           search=f"search {search}\n" if search else "")
    started = time.monotonic()
    result = topology.getent(name, resolv_conf=resolv)
    elapsed = time.monotonic() - started
    return result.returncode, parse_ahosts(result.stdout), elapsed


def in_netns(topology: NetnsTopology, query: dns.message.Message,
             tcp: bool = False) -> dns.message.Message:
    send = dns.query.tcp if tcp else dns.query.udp
    return topology.netns.call(send, query, "127.0.0.1", timeout=3, port=53)


def test_service_names(topology):
    code, found, _ = getent(topology, "web.service.consul")
    assert code == 0
    assert set(found) == set(catalogs.WEB_HEALTHY)
    assert found[catalogs.WEB_HEALTHY[0]] == {"STREAM", "DGRAM", "RAW"}
    code, found, _ = getent(topology, "db.service.consul")
    assert (code, set(found)) == (0, {catalogs.DB_ADDRESS})


def test_upstream_names(topology):
    code, found, _ = getent(topology, zone.WWW.name.rstrip("."))
    assert (code, set(found)) == (0, set(zone.WWW.values))
    code, found, _ = getent(topology, zone.DUAL_A.name.rstrip("."))
    assert (code, set(found)) == (0, {*zone.DUAL_A.values, *zone.DUAL_AAAA.values})
    code, found, _ = getent(topology, zone.ALIAS.name.rstrip("."))  # CNAME chain followed
    assert (code, set(found)) == (0, set(zone.WWW.values))


def test_search_domains(topology):
    search = "service.consul example.test"
    code, found, _ = getent(topology, "web", search=search)
    assert (code, set(found)) == (0, set(catalogs.WEB_HEALTHY))
    # www.service.consul is NXDOMAIN at the agent; glibc goes on to www.example.test.
    code, found, elapsed = getent(topology, "www", search=search)
    assert (code, set(found)) == (0, set(zone.WWW.values))
    assert elapsed < RESOLVER_TIMEOUT  # no query of the search list waited for a timeout


@pytest.mark.parametrize("name", [zone.NX_NAME.rstrip("."), "nope.service.consul"])
def test_nxdomain_is_answered_fast(topology, name):
    reply = in_netns(topology, dns.message.make_query(name, "A"))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    code, found, elapsed = getent(topology, name, search="service.consul example.test")
    assert (code, found) == (2, {})
    # Every name of the search list tried, each NXDOMAIN at once: none waited for timeout:2.
    assert elapsed < RESOLVER_TIMEOUT


def test_forty_instances_tc_then_tcp(topology):
    udp = in_netns(topology, dns.message.make_query(BIG, "A"))
    assert udp.flags & dns.flags.TC  # 512 bytes hold ~28 of them
    assert len(udp.answer[0]) < 40
    code, found, _ = getent(topology, BIG)
    assert code == 0
    assert set(found) == set(BIG_ADDRESSES)  # all 40: glibc retried over TCP


def test_options_edns0(topology):
    # glibc advertises 1200 bytes with edns0: the 40 records fit in UDP.
    edns = in_netns(topology, dns.message.make_query(BIG, "A", use_edns=0, payload=1200))
    assert not edns.flags & dns.flags.TC and len(edns.answer[0]) == 40
    code, found, _ = getent(topology, BIG, options="edns0")
    assert (code, set(found)) == (0, set(BIG_ADDRESSES))
    code, found, _ = getent(topology, zone.DUAL_A.name.rstrip("."), options="edns0")
    assert (code, set(found)) == (0, {*zone.DUAL_A.values, *zone.DUAL_AAAA.values})


@pytest.mark.parametrize("options", ["single-request", "single-request-reopen", "use-vc",
                                     "use-vc edns0"])
def test_resolver_options(topology, options):
    code, found, _ = getent(topology, "web.service.consul", options=options)
    assert (code, set(found)) == (0, set(catalogs.WEB_HEALTHY))
    code, found, _ = getent(topology, zone.DUAL_A.name.rstrip("."), options=options)
    assert (code, set(found)) == (0, {*zone.DUAL_A.values, *zone.DUAL_AAAA.values})
    code, found, _ = getent(topology, BIG, options=options)
    assert (code, set(found)) == (0, set(BIG_ADDRESSES))
    code, found, elapsed = getent(topology, "nope.service.consul", options=options)
    assert (code, found) == (2, {}) and elapsed < RESOLVER_TIMEOUT
