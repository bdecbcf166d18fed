"""nginx's resolver as a client of `consuldns serve` (issue 7: real clients).

nginx 1.22 resolves a variable in `proxy_pass` at request time through `resolver`, caches the
answer for `valid=1s`, sends A (and AAAA with ipv6=on) without EDNS, drops replies with
Z/AD/CD set and fails the whole name on an error rcode for either query (nginx's src/core/ngx_resolver.c).
The backends are HTTP servers on 127.0.0.2-5, the `web` instances of the Consul double.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.e2e.admin import scrape
from tests.e2e.client import ask_raw
from tests.harness import catalogs

pytestmark = pytest.mark.nginx

VALID = 1.0  # the harness's `resolver ... valid=1s`


def requests_for(proxy, seconds: float, pause: float = 0.02) -> list[tuple[float, int, str]]:
    """GET through nginx for `seconds`: (send time, status, backend that answered)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent = time.monotonic()
        status, body, _ = proxy.get(timeout=10)
        seen.append((sent, status, body if status == 200 else ""))
        time.sleep(pause)
    return seen


def resolver_errors(proxy) -> list[str]:
    """Lines where nginx complained about its resolver's replies."""
    markers = ("invalid", "unexpected", "wrong ident", "could not be resolved", "timed out",
               "Server failure", "Host not found")
    return [line for line in proxy.error_log().splitlines()
            if "resolv" in line.lower() or any(m in line for m in markers)
            if "[error]" in line or "[crit]" in line or "[alert]" in line]


def test_requests_spread_over_every_healthy_instance(shared_consuldns, backends, nginx_server):
    pool = backends(count=4, first=2)
    proxy = nginx_server(shared_consuldns, backend_port=pool.port)
    seen = [proxy.get() for _ in range(60)]
    assert all(status == 200 for status, _, _ in seen)
    by_backend = collections.Counter(body for _, body, _ in seen)
    assert set(by_backend) == set(catalogs.WEB_HEALTHY)  # never the critical 127.0.0.9
    assert min(by_backend.values()) >= 5  # spread, not pinned to the first address
    assert resolver_errors(proxy) == []


def test_deregistered_backend_gets_no_traffic_after_valid_plus_one_second(
        shared_consuldns, shared_double, backends, nginx_server):
    pool = backends(count=4, first=2)
    proxy = nginx_server(shared_consuldns, backend_port=pool.port)
    before = requests_for(proxy, 0.6)
    assert catalogs.WEB_HEALTHY[0] in {backend for _, _, backend in before}
    shared_double.control.deregister_service("web-node1")
    removed_at = time.monotonic()
    after = requests_for(proxy, VALID + 2.0)
    assert all(status == 200 for _, status, _ in after)
    to_removed = [sent - removed_at for sent, _, backend in after
                  if backend == catalogs.WEB_HEALTHY[0]]
    # nginx keeps an answer `valid` seconds on a one-second clock: at most valid + 1 s.
    assert not to_removed or max(to_removed) < VALID + 1.0 + 0.1, to_removed
    late = {backend for sent, _, backend in after if sent - removed_at > VALID + 1.1}
    assert late == set(catalogs.WEB_HEALTHY[1:])


def requests_until(proxy, done: Callable[[], bool], what: str, timeout: float = 15.0,
                   pause: float = 0.02) -> list[tuple[float, int, str]]:
    """GET through nginx until `done()` (checked after each request) or fail after timeout."""
    seen = []
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        sent = time.monotonic()
        status, body, _ = proxy.get(timeout=10)
        seen.append((sent, status, body if status == 200 else ""))
        time.sleep(pause)
    return seen


def test_agent_down_for_seconds_no_request_fails(consuldns_server, shared_double, backends,
                                                 nginx_server):
    """Stale answers (TTL 30) keep nginx routing while the agent is silent, then while it has
    lost its servers (SERVFAIL after a delay), then once it is back; nginx asks A and AAAA
    (ipv6=on, nginx's default), so the AAAA (NODATA for these IPv4 instances) must not fail
    either. Each phase lasts until consuldns has shown what it is about, not a fixed time:
    nginx re-resolves on its own one-second clock, so when it does is not the test's to say."""
    pool = backends(count=4, first=2)
    # A 1 s deadline (2 s by default) halves the waits on the silent agent; nginx's own
    # resolver_timeout (5 s) is far from either.
    server = consuldns_server(admin=True, config="[consul]\ntimeout = 1.0\n")
    proxy = nginx_server(server, backend_port=pool.port, ipv6=True)
    control = shared_double.control

    def stale_answers() -> float:
        return scrape(server).get(("consuldns_cache_stale_total", frozenset()), 0.0)

    def agent_queries() -> int:
        return control.count("web.service.consul", "A")

    warm = requests_until(proxy, lambda: agent_queries() >= 1, "nginx resolved the name")
    control.set_fault("drop")
    # The first resolution waits out the deadline, then gets stale answers (A and AAAA);
    # the next one gets them at once.
    silent = requests_until(proxy, lambda: stale_answers() >= 4, "two stale resolutions")
    control.clear_faults()
    control.set_fault("servfail", delay=0.3)
    stale_before, asked_before = stale_answers(), agent_queries()
    lost_servers = requests_until(
        proxy, lambda: agent_queries() > asked_before and stale_answers() >= stale_before + 2,
        "a refresh met SERVFAIL, and a resolution was stale")
    control.clear_faults()
    asked_before = agent_queries()
    after = requests_until(proxy, lambda: agent_queries() > asked_before,
                           "the agent answered a refresh again")
    start = silent[0][0]
    failed = [(round(sent - start, 2), status)
              for sent, status, _ in warm + silent + lost_servers + after if status != 200]
    assert failed == []
    assert {backend for _, _, backend in silent + lost_servers} == set(catalogs.WEB_HEALTHY)
    assert resolver_errors(proxy) == []


def test_a_and_aaaa_together_aaaa_is_noerror_empty(shared_consuldns, backends, nginx_server):
    pool = backends(count=4, first=2)
    server = shared_consuldns
    # What nginx sends: no EDNS, RD=1; the AAAA of an IPv4-only service is NODATA, not an error.
    for rdtype in ("A", "AAAA"):
        query = dns.message.make_query("web.service.consul", rdtype)
        reply = dns.message.from_wire(ask_raw(server, query.to_wire()))
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.flags & 0xF870 == 0x8000  # nginx's acceptance mask: no Z/AD/CD
        assert reply.edns < 0
    aaaa = dns.message.from_wire(ask_raw(
        server, dns.message.make_query("web.service.consul", "AAAA").to_wire()))
    assert aaaa.answer == []
    proxy = nginx_server(server, backend_port=pool.port, ipv6=True)
    seen = requests_for(proxy, 1.5, pause=0.05)
    assert all(status == 200 for _, status, _ in seen)
    assert {backend for _, _, backend in seen} == set(catalogs.WEB_HEALTHY)
    assert resolver_errors(proxy) == []


def test_forty_instances_nginx_retries_over_tcp_and_sees_them_all(
        shared_consuldns, shared_double, backends, nginx_server):
    """40 A records do not fit nginx's 512-byte UDP reply: TC, then TCP, then all 40."""
    first = 20
    pool = backends(count=40, first=first)
    for i in range(40):
        address = f"127.0.0.{first + i}"
        shared_double.control.register_node(f"big{i}", address)
        shared_double.control.register_service("big", f"big{i}", id=f"big-{i}", port=pool.port)
    server = shared_consuldns
    udp = dns.message.from_wire(ask_raw(
        server, dns.message.make_query("big.service.consul", "A").to_wire()))
    assert udp.flags & dns.flags.TC  # what nginx sees first
    proxy = nginx_server(server, backend_port=pool.port, name="big.service.consul")
    seen = [proxy.get() for _ in range(200)]
    assert all(status == 200 for status, _, _ in seen)
    used = {body for _, body, _ in seen}
    # A UDP reply holds at most ~28 of them: more than that came over TCP.
    assert len(used) > 30
    assert used <= set(pool.addresses)
    assert resolver_errors(proxy) == []
