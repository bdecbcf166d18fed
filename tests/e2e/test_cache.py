"""Caching, shuffling, coalescing and serve-stale through `consuldns serve` (issue: cache)."""

from __future__ import annotations

import collections
import socket
import threading
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import dns.rdataset
import dns.rrset
import pytest

from consuldns.cli import adminclient
from tests.e2e.admin import cache_state, delta, scrape
from tests.e2e.client import addresses, ask
from tests.e2e.fake_upstream import FakeUpstream, answer_a, wait_until
from tests.harness import catalogs
from tests.harness import upstream as zone

SOA_TYPE = 6
SOA = "ns.cache.test. hostmaster.cache.test. 1 3600 600 86400 {minimum}"



def nxdomain_with_soa(query, soa_ttl: int, minimum: int) -> bytes:
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.NXDOMAIN)
    reply.authority.append(dns.rrset.from_text("cache.test.", soa_ttl, "IN", "SOA",
                                               SOA.format(minimum=minimum)))
    return reply.to_wire()


def queries_for(fake: FakeUpstream, name: str) -> int:
    return sum(1 for r in fake.received if r.name == name)


def asked_again(server, name: str, asked_upstream: Callable[[], int], since: float,
                lifetime: float, timeout: float = 5.0) -> None:
    """Ask `name` until the upstream is asked a second time: not before `lifetime` seconds
    after `since` (when the first query was sent; the entry was stored later), and not much
    after it. Polls instead of sleeping past the expiry."""
    deadline = since + lifetime + timeout
    while time.monotonic() < deadline:
        ask(server, name)
        answered = time.monotonic()
        if asked_upstream() >= 2:
            assert answered - since >= lifetime, "asked again before the entry expired"
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} was not asked again {lifetime + timeout} s after the first")


def test_repeats_reach_the_upstream_once(consuldns_server, fakes):
    fake = fakes(lambda query, transport: answer_a(query, ["192.0.2.1"], ttl=300))
    server = consuldns_server(upstreams=[fake])
    for _ in range(5):
        assert addresses(ask(server, "repeat.cache.test")) == ["192.0.2.1"]
        assert addresses(ask(server, "REPEAT.cache.test", tcp=True)) == ["192.0.2.1"]
    assert queries_for(fake, "repeat.cache.test.") == 1


def test_ttl_counts_down_on_hits(shared_consuldns):
    server = shared_consuldns
    asked = time.monotonic()
    assert ask(server, zone.WWW.name).answer[0].ttl == zone.WWW.ttl
    seen = [zone.WWW.ttl]
    deadline = asked + 5
    while seen[-1] > zone.WWW.ttl - 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        seen.append(ask(server, zone.WWW.name).answer[0].ttl)
    # Two seconds off once the entry (stored after `asked`) is two seconds old, not sooner.
    assert seen[-1] == zone.WWW.ttl - 2 and time.monotonic() - asked >= 2.0
    assert seen == sorted(seen, reverse=True)


def test_expiry_refetches(consuldns_server, fakes):
    fake = fakes(lambda query, transport: answer_a(query, ["192.0.2.2"], ttl=1))
    server = consuldns_server(upstreams=[fake])
    asked = time.monotonic()
    ask(server, "short.cache.test")
    ask(server, "short.cache.test")
    assert queries_for(fake, "short.cache.test.") == 1
    asked_again(server, "short.cache.test", lambda: queries_for(fake, "short.cache.test."),
                asked, lifetime=1)


def test_min_ttl_sets_how_long_agent_answers_stay_cached(consuldns_server, shared_double):
    """The agent answers with TTL 0; [cache.consul] min_ttl = 1 raises both the TTL clients
    see and the entry's lifetime."""
    server = consuldns_server(config="[cache.consul]\nmin_ttl = 1\n")
    count = shared_double.control.count
    asked = time.monotonic()
    assert {rrset.ttl for rrset in ask(server, "web.service.consul").answer} == {1}
    ask(server, "web.service.consul")
    assert count("web.service.consul") == 1
    asked_again(server, "web.service.consul", lambda: count("web.service.consul"), asked,
                lifetime=1)


@pytest.mark.parametrize("soa_ttl,minimum", [(300, 1), (1, 300)],
                         ids=["minimum-lower", "soa-ttl-lower"])
def test_negative_answers_live_the_lower_of_soa_ttl_and_minimum(consuldns_server,
                                                                fakes, soa_ttl, minimum):
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM), whichever of the two is lower."""
    fake = fakes(lambda query, transport: nxdomain_with_soa(query, soa_ttl, minimum))
    server = consuldns_server(upstreams=[fake])
    asked = time.monotonic()
    first = ask(server, "gone.cache.test")
    assert first.rcode() == dns.rcode.NXDOMAIN and first.authority[0].ttl == 1
    assert ask(server, "gone.cache.test").rcode() == dns.rcode.NXDOMAIN
    assert queries_for(fake, "gone.cache.test.") == 1
    asked_again(server, "gone.cache.test", lambda: queries_for(fake, "gone.cache.test."),
                asked, lifetime=1)


def test_negative_answer_without_soa_is_not_cached(consuldns_server, fakes):
    def bare_nxdomain(query, transport):
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.NXDOMAIN)
        return reply.to_wire()

    fake = fakes(bare_nxdomain)
    server = consuldns_server(upstreams=[fake])
    for _ in range(3):
        assert ask(server, "nosoa.cache.test").rcode() == dns.rcode.NXDOMAIN
    assert queries_for(fake, "nosoa.cache.test.") == 3


def test_real_upstream_negative_ttl_is_min_of_soa_ttl_and_minimum(shared_consuldns):
    reply = ask(shared_consuldns, zone.NX_NAME)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.authority[0].ttl == zone.NEGATIVE_TTL


def test_deregistration_is_visible_on_the_next_query(shared_consuldns, shared_double):
    server = shared_consuldns
    assert sorted(addresses(ask(server, "web.service.consul"))) == sorted(catalogs.WEB_HEALTHY)
    shared_double.control.deregister_service("web-node1")
    after = addresses(ask(server, "web.service.consul"))
    assert sorted(after) == sorted(catalogs.WEB_HEALTHY[1:])
    shared_double.control.set_check("critical", service_id="web-node2")
    assert catalogs.WEB_HEALTHY[1] not in addresses(ask(server, "web.service.consul"))


def concurrent(server, name: str, count: int, tcp: bool = False) -> list[dns.message.Message]:
    replies: list = [None] * count
    barrier = threading.Barrier(count)

    def one(index: int) -> None:
        barrier.wait()
        replies[index] = ask(server, name, tcp=tcp, timeout=5)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


COALESCED = "consuldns_cache_coalesced_total"
JOINERS = 20  # concurrent identical misses
AGENT_LATENCY = 1.0  # every query of a burst arrives while the first one's exchange lasts


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_concurrent_identical_misses_share_one_agent_exchange(shared_consuldns, shared_double,
                                                              tcp):
    """UDP misses join as followers of the first one's exchange, TCP misses through the
    in-flight map: one agent query, and every other miss counted as coalesced."""
    server = shared_consuldns
    shared_double.control.set_fault("latency", delay=AGENT_LATENCY)
    before = scrape(server)
    replies = concurrent(server, "web.service.consul", JOINERS, tcp=tcp)
    assert all(sorted(addresses(r)) == sorted(catalogs.WEB_HEALTHY) for r in replies)
    assert shared_double.control.counters().total == 1
    assert delta(before, scrape(server), COALESCED) == JOINERS - 1


def test_misses_join_a_background_refresh_under_way(consuldns_server, shared_double):
    """A prefetch refresh is still waiting on the agent when the entry expires: the misses
    that follow wait for it instead of asking the agent again."""
    server = consuldns_server(admin=True, config="[cache]\nprefetch = true\n"
                                                 "[cache.consul]\nmin_ttl = 2\n")
    control = shared_double.control
    ask(server, "web.service.consul")  # fresh for 2 s; its last second is for prefetching
    control.set_fault("latency", delay=3.0)
    control.reset_counters()
    # A hit in the entry's last second (TTL 1 left) starts the refresh.
    assert wait_until(lambda: ask(server, "web.service.consul").answer[0].ttl == 1)
    assert wait_until(lambda: control.counters().total == 1)  # the refresh, still waiting
    assert wait_until(lambda: cache_state(server, "web.service.consul") == "stale")  # expired
    before = scrape(server)
    replies = concurrent(server, "web.service.consul", JOINERS)
    assert all(sorted(addresses(r)) == sorted(catalogs.WEB_HEALTHY) for r in replies)
    assert control.counters().total == 1
    assert delta(before, scrape(server), COALESCED) == JOINERS


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


def test_cached_upstream_answers_are_shuffled_on_every_hit(shared_consuldns):
    server = shared_consuldns
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


def test_agent_down_serves_stale_with_ttl_30(consuldns_server, shared_double):
    server = consuldns_server()
    fresh = ask(server, "web.service.consul")  # TTL 0: expired at once
    assert sorted(addresses(fresh)) == sorted(catalogs.WEB_HEALTHY)
    shared_double.control.set_fault("drop")
    stale = ask(server, "web.service.consul", timeout=5)
    assert stale.rcode() == dns.rcode.NOERROR
    assert sorted(addresses(stale)) == sorted(catalogs.WEB_HEALTHY)
    assert {rrset.ttl for rrset in stale.answer} == {30}
    started = time.monotonic()
    again = ask(server, "web.service.consul", timeout=5)
    assert sorted(addresses(again)) == sorted(catalogs.WEB_HEALTHY)
    assert time.monotonic() - started < 1.0  # known failure: stale at once, not in 2 s
    shared_double.control.clear_faults()
    assert wait_until(lambda: ask(server, "web.service.consul").answer[0].ttl != 30, 5)


def test_agent_with_ttl_zero_down_still_serves_stale(shared_consuldns, shared_double):
    server = shared_consuldns
    assert addresses(ask(server, "web.service.consul"))
    shared_double.control.set_fault("servfail")
    stale = ask(server, "web.service.consul", timeout=5)
    assert sorted(addresses(stale)) == sorted(catalogs.WEB_HEALTHY)
    assert stale.answer[0].ttl == 30


def test_agent_nodata_is_served_stale_too(shared_consuldns, shared_double):
    """The AAAA of an IPv4-only service is NODATA; nginx fails a name when either of its A
    and AAAA queries fails, so an outage must not turn that NODATA into SERVFAIL."""
    server = shared_consuldns
    nodata = ask(server, "web.service.consul", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == [] and nodata.authority
    shared_double.control.set_fault("servfail")
    for _ in range(2):  # when the agent fails, then while it keeps failing
        stale = ask(server, "web.service.consul", "AAAA")
        assert stale.rcode() == dns.rcode.NOERROR and stale.answer == []
        assert [(rrset.rdtype, rrset.ttl) for rrset in stale.authority] == [(SOA_TYPE, 30)]


def test_agent_nxdomain_is_news_and_never_served_stale(shared_consuldns, shared_double):
    server = shared_consuldns
    control = shared_double.control
    assert addresses(ask(server, "db.service.consul"))  # TTL 0: expired at once
    control.set_check("critical", service_id="db-node5")
    assert ask(server, "db.service.consul").rcode() == dns.rcode.NXDOMAIN  # not the stale A
    control.set_fault("servfail")
    for _ in range(2):  # when the agent fails, then while it keeps failing
        reply = ask(server, "db.service.consul")
        # A stale NXDOMAIN would hide the service once it is back: SERVFAIL instead.
        assert reply.rcode() == dns.rcode.SERVFAIL and not reply.authority


def test_failing_agent_never_becomes_nxdomain(shared_consuldns, shared_double):
    server = shared_consuldns
    shared_double.control.set_fault("drop")
    reply = ask(server, "never-seen.service.consul", timeout=5)
    assert reply.rcode() == dns.rcode.SERVFAIL


def test_cache_size_bound_holds_under_ten_times_more_names(consuldns_server, fakes):
    fake = fakes(lambda query, transport: answer_a(query, ["192.0.2.3"], ttl=300))
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


def test_prefetch_refreshes_a_hot_entry_before_it_expires(consuldns_server, fakes):
    fake = fakes(lambda query, transport: answer_a(query, ["192.0.2.4"], ttl=2))
    server = consuldns_server(upstreams=[fake], config="[cache]\nprefetch = true\n")
    deadline = time.monotonic() + 5
    while queries_for(fake, "hot.cache.test.") < 2 and time.monotonic() < deadline:
        ask(server, "hot.cache.test")  # hits; those in the entry's last second prefetch
        time.sleep(0.05)
    first, second = [r.at for r in fake.received if r.name == "hot.cache.test."][:2]
    # The entry was stored after `first` came in, so it expired after first + 2: asked
    # again before that, it was renewed while still fresh.
    assert second - first < 2


# ------------------------------------------------------------------ memory bounded in bytes

BIG_TXT = dns.rdataset.from_text_list("IN", "TXT", 3600, [f'"{i:03d}{"x" * 246}"'
                                                           for i in range(240)])  # 60 KB


def big_txt_over_tcp(query, transport):
    """TC over UDP; over TCP a 60 KB TXT answer (the largest kind a cache can be fed)."""
    reply = dns.message.make_response(query)
    if transport == "udp":
        reply.flags |= dns.flags.TC
        return reply.to_wire()
    answer = dns.rrset.RRset(query.question[0].name, BIG_TXT.rdclass, BIG_TXT.rdtype)
    answer.update(BIG_TXT)
    reply.answer.append(answer)
    return reply.to_wire(max_size=65535)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def fill(server, prefix: str, count: int) -> None:
    for i in range(count):
        reply = ask(server, f"{prefix}{i}.big.cache.test", "TXT")
        assert reply.flags & dns.flags.TC  # the 60 KB answer was fetched and cached


def test_large_answers_stay_within_the_byte_budget(consuldns_server, fakes):
    budget = 4 * 1024 * 1024  # each 60 KB answer counts ~155 KB: 27 of them fit
    fake = fakes(big_txt_over_tcp)
    server = consuldns_server(upstreams=[fake], admin=True,
                              config=f"[cache]\nmax_bytes = {budget}\n")
    fill(server, "warm", 10)  # every code path loaded, the allocator's arenas in use
    base = rss_bytes(server.pid)
    fill(server, "first", 300)  # 18 MiB of answers if nothing were evicted
    filled = rss_bytes(server.pid)
    assert filled - base < budget + 4 * 1024 * 1024, (base, filled)  # without: +19 MiB
    metrics = scrape(server)
    assert metrics[("consuldns_cache_bytes", frozenset())] <= budget
    assert metrics[("consuldns_cache_evictions_total", frozenset())] >= 280
    adminclient.flush(server.admin_address)
    fill(server, "second", 300)  # the memory the flushed entries held is reused
    refilled = rss_bytes(server.pid)
    print(f"RSS base {base >> 20} MiB, after 300 x 60 KB {filled >> 20} MiB, after a flush "
          f"and 300 more {refilled >> 20} MiB (budget {budget >> 20} MiB)")
    assert refilled - filled < 2 * 1024 * 1024, (base, filled, refilled)
    assert len([r for r in fake.received if r.transport == "tcp"]) == 610  # all fetched
