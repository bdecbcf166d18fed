"""Caching, shuffling, coalescing and serve-stale through `consuldns serve` (issue: cache)."""

from __future__ import annotations

import collections
import socket
import threading
import time

import dns.message
import dns.rcode
import dns.rrset
import pytest

from tests.e2e.client import addresses, ask
from tests.e2e.fake_upstream import FakeUpstream, answer_a, wait_until
from tests.harness import catalogs
from tests.harness import upstream as zone

SOA = "ns.cache.test. hostmaster.cache.test. 1 3600 600 86400 {minimum}"


@pytest.fixture
def fake_upstream():
    fakes = []

    def start(handle):
        fake = FakeUpstream(handle)
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.stop()


def nxdomain_with_soa(query, soa_ttl: int, minimum: int) -> bytes:
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.NXDOMAIN)
    reply.authority.append(dns.rrset.from_text("cache.test.", soa_ttl, "IN", "SOA",
                                               SOA.format(minimum=minimum)))
    return reply.to_wire()


def queries_for(fake: FakeUpstream, name: str) -> int:
    return sum(1 for r in fake.received if r.name == name)


def test_repeats_reach_the_upstream_once(consuldns_server, fake_upstream):
    fake = fake_upstream(lambda query, transport: answer_a(query, ["192.0.2.1"], ttl=300))
    server = consuldns_server(upstreams=[fake])
    for _ in range(5):
        assert addresses(ask(server, "repeat.cache.test")) == ["192.0.2.1"]
        assert addresses(ask(server, "REPEAT.cache.test", tcp=True)) == ["192.0.2.1"]
    assert queries_for(fake, "repeat.cache.test.") == 1


def test_ttl_counts_down_on_hits(consuldns_server):
    server = consuldns_server()
    first = ask(server, zone.WWW.name).answer[0].ttl
    assert first == zone.WWW.ttl
    time.sleep(2.1)
    later = ask(server, zone.WWW.name).answer[0].ttl
    assert zone.WWW.ttl - 3 <= later <= zone.WWW.ttl - 2


def test_expiry_refetches(consuldns_server, fake_upstream):
    fake = fake_upstream(lambda query, transport: answer_a(query, ["192.0.2.2"], ttl=1))
    server = consuldns_server(upstreams=[fake])
    ask(server, "short.cache.test")
    ask(server, "short.cache.test")
    assert queries_for(fake, "short.cache.test.") == 1
    time.sleep(1.2)
    ask(server, "short.cache.test")
    assert queries_for(fake, "short.cache.test.") == 2


def test_negative_answers_are_cached_for_the_soa_minimum(consuldns_server, fake_upstream):
    fake = fake_upstream(lambda query, transport: nxdomain_with_soa(query, 300, 2))
    server = consuldns_server(upstreams=[fake])
    first = ask(server, "gone.cache.test")
    assert first.rcode() == dns.rcode.NXDOMAIN and first.authority[0].ttl == 2
    assert ask(server, "gone.cache.test").rcode() == dns.rcode.NXDOMAIN
    assert queries_for(fake, "gone.cache.test.") == 1
    time.sleep(2.2)
    ask(server, "gone.cache.test")
    assert queries_for(fake, "gone.cache.test.") == 2


def test_negative_answer_without_soa_is_not_cached(consuldns_server, fake_upstream):
    def bare_nxdomain(query, transport):
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.NXDOMAIN)
        return reply.to_wire()

    fake = fake_upstream(bare_nxdomain)
    server = consuldns_server(upstreams=[fake])
    for _ in range(3):
        assert ask(server, "nosoa.cache.test").rcode() == dns.rcode.NXDOMAIN
    assert queries_for(fake, "nosoa.cache.test.") == 3


def test_real_upstream_negative_ttl_is_min_of_soa_ttl_and_minimum(consuldns_server):
    reply = ask(consuldns_server(), zone.NX_NAME)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.authority[0].ttl == zone.NEGATIVE_TTL


def test_deregistration_is_visible_on_the_next_query(consuldns_server, consul_double):
    server = consuldns_server()
    assert sorted(addresses(ask(server, "web.service.consul"))) == sorted(catalogs.WEB_HEALTHY)
    consul_double.control.deregister_service("web-node1")
    after = addresses(ask(server, "web.service.consul"))
    assert sorted(after) == sorted(catalogs.WEB_HEALTHY[1:])
    consul_double.control.set_check("critical", service_id="web-node2")
    assert catalogs.WEB_HEALTHY[1] not in addresses(ask(server, "web.service.consul"))


def concurrent(server, name: str, count: int) -> list[dns.message.Message]:
    replies: list = [None] * count
    barrier = threading.Barrier(count)

    def one(index: int) -> None:
        barrier.wait()
        replies[index] = ask(server, name, timeout=5)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def test_concurrent_identical_misses_share_one_agent_exchange(consuldns_server, consul_double):
    server = consuldns_server()
    consul_double.control.set_fault("latency", delay=0.4)
    consul_double.control.reset_counters()
    replies = concurrent(server, "web.service.consul", 30)
    assert all(sorted(addresses(r)) == sorted(catalogs.WEB_HEALTHY) for r in replies)
    assert consul_double.control.counters().total == 1


def order_counts(server, name: str, times: int) -> collections.Counter:
    return collections.Counter(tuple(addresses(ask(server, name))) for _ in range(times))


def test_cached_agent_answers_are_shuffled_on_every_hit(consuldns_server, consul_double):
    server = consuldns_server(config="[cache.consul]\nmin_ttl = 60\n")
    consul_double.control.reset_counters()
    orders = order_counts(server, "web.service.consul", 60)
    assert consul_double.control.counters().total == 1  # every other answer was a hit
    assert sum(orders.values()) == 60
    assert len(orders) >= 8  # of 24 orders; a fixed order gives 1
    firsts = collections.Counter(order[0] for order in orders.elements())
    assert set(firsts) == set(catalogs.WEB_HEALTHY)


def test_cached_upstream_answers_are_shuffled_on_every_hit(consuldns_server):
    server = consuldns_server()
    orders = order_counts(server, zone.MULTI.name, 60)
    firsts = collections.Counter(order[0] for order in orders.elements())
    assert set(firsts) == set(zone.MULTI.values)
    assert max(firsts.values()) < 30


def burst(server, name: str, count: int) -> list[dns.message.Message]:
    """count queries for name sent at once from one socket (IDs 0..count-1), their replies."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for qid in range(count):
            query = dns.message.make_query(name, "A")
            query.id = qid
            sock.sendto(query.to_wire(), (server.host, server.port))
        return [dns.message.from_wire(sock.recv(4096)) for _ in range(count)]


def test_followers_of_one_agent_exchange_get_their_own_random_order(consuldns_server,
                                                                    consul_double):
    server = consuldns_server()  # TTL 0: nothing cached, identical queries share exchanges
    consul_double.control.set_fault("latency", 0.3)  # every burst waits on one exchange
    consul_double.control.reset_counters()
    replies = burst(server, "web.service.consul", 240)
    assert consul_double.control.counters().total <= 3  # followers, not each its own
    assert sorted(reply.id for reply in replies) == list(range(240))
    orders = collections.Counter(tuple(addresses(reply)) for reply in replies)
    assert len(orders) >= 20  # of 24: 240 uniform draws leave out one about once in 1000
    firsts = collections.Counter(order[0] for order in orders.elements())
    assert set(firsts) == set(catalogs.WEB_HEALTHY)
    assert max(firsts.values()) < 90  # 60 expected each; a fixed order gives 240


def test_agent_down_serves_stale_with_ttl_30(consuldns_server, consul_double):
    server = consuldns_server(config="[cache.consul]\nmin_ttl = 1\n")
    fresh = ask(server, "web.service.consul")
    assert sorted(addresses(fresh)) == sorted(catalogs.WEB_HEALTHY)
    consul_double.control.set_fault("drop")
    time.sleep(1.1)
    stale = ask(server, "web.service.consul", timeout=5)
    assert stale.rcode() == dns.rcode.NOERROR
    assert sorted(addresses(stale)) == sorted(catalogs.WEB_HEALTHY)
    assert {rrset.ttl for rrset in stale.answer} == {30}
    started = time.monotonic()
    again = ask(server, "web.service.consul", timeout=5)
    assert sorted(addresses(again)) == sorted(catalogs.WEB_HEALTHY)
    assert time.monotonic() - started < 0.5  # known failure: stale at once, refresh behind
    consul_double.control.clear_faults()
    assert wait_until(lambda: ask(server, "web.service.consul").answer[0].ttl != 30, 5)


def test_agent_with_ttl_zero_down_still_serves_stale(consuldns_server, consul_double):
    server = consuldns_server()
    assert addresses(ask(server, "web.service.consul"))
    consul_double.control.set_fault("servfail")
    stale = ask(server, "web.service.consul", timeout=5)
    assert sorted(addresses(stale)) == sorted(catalogs.WEB_HEALTHY)
    assert stale.answer[0].ttl == 30


def test_agent_nxdomain_is_news_not_a_reason_for_stale(consuldns_server, consul_double):
    server = consuldns_server(config="[cache.consul]\nmin_ttl = 1\n")
    assert addresses(ask(server, "db.service.consul"))
    consul_double.control.set_check("critical", service_id="db-node5")
    time.sleep(1.1)
    assert ask(server, "db.service.consul").rcode() == dns.rcode.NXDOMAIN


def test_failing_agent_never_becomes_nxdomain(consuldns_server, consul_double):
    server = consuldns_server()
    consul_double.control.set_fault("drop")
    reply = ask(server, "never-seen.service.consul", timeout=5)
    assert reply.rcode() == dns.rcode.SERVFAIL


def test_cache_size_bound_holds_under_ten_times_more_names(consuldns_server, fake_upstream):
    fake = fake_upstream(lambda query, transport: answer_a(query, ["192.0.2.3"], ttl=300))
    server = consuldns_server(upstreams=[fake], config="[cache]\nsize = 50\n")
    names = [f"n{i}.bound.cache.test" for i in range(500)]
    for name in names:
        ask(server, name)
    for name in names[-20:]:
        ask(server, name)
    for name in names[:20]:
        ask(server, name)
    recent = sum(queries_for(fake, name + ".") for name in names[-20:])
    oldest = sum(queries_for(fake, name + ".") for name in names[:20])
    assert recent == 20  # still cached
    assert oldest == 40  # evicted long ago: asked again


def test_prefetch_refreshes_a_hot_entry_before_it_expires(consuldns_server, fake_upstream):
    fake = fake_upstream(lambda query, transport: answer_a(query, ["192.0.2.4"], ttl=3))
    server = consuldns_server(upstreams=[fake], config="[cache]\nprefetch = true\n")
    deadline = time.monotonic() + 4.5
    ttls = []
    while time.monotonic() < deadline:
        ttls.append(ask(server, "hot.cache.test").answer[0].ttl)
        time.sleep(0.1)
    assert queries_for(fake, "hot.cache.test.") >= 2
    assert 0 not in ttls  # the entry was renewed before it ran out
