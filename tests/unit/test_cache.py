"""Cache rules (RFC 2308, RFC 8767) and the store, with an injected clock."""

import dns.flags

from consuldns import wire
from consuldns.cache import Cache, CachePolicy, Entry, Kind, classify
from consuldns.template import render
from tests.unit.helpers import SOA_TEXT, reply_bytes


class Clock:
    def __init__(self, start: float = 1000.0):
        self.time = start

    def __call__(self) -> float:
        return self.time


def decide(data: bytes, policy=CachePolicy()):
    return classify(wire.parse_reply(data), policy)


def test_positive_lifetime_is_the_lowest_answer_ttl_clamped():
    data = reply_bytes("a.test", "A", ["192.0.2.1"], ttl=300,
                       extra_answers=[("a.test", 100, "TXT", '"x"')])
    assert decide(data).lifetime == 100
    assert decide(data, CachePolicy(max_ttl=50)).lifetime == 50
    zero = reply_bytes("web.service.consul", "A", ["192.0.2.1"], ttl=0)
    assert decide(zero).lifetime == 0
    raised = decide(zero, CachePolicy(min_ttl=5))
    assert (raised.kind, raised.lifetime, raised.ttls) == (Kind.POSITIVE, 5, [5])


def test_negative_lifetime_comes_from_the_soa():
    nx = reply_bytes("nx.example.test", "A", rcode=3,
                     authority=[("example.test", 300, "SOA", SOA_TEXT)])
    decision = decide(nx)
    assert decision.kind is Kind.NEGATIVE and decision.lifetime == 60  # min(300, MINIMUM 60)
    assert decide(nx, CachePolicy(neg_max_ttl=10)).lifetime == 10
    nodata = reply_bytes("www.example.test", "AAAA",
                         authority=[("example.test", 30, "SOA", SOA_TEXT)])
    assert decide(nodata).kind is Kind.NEGATIVE and decide(nodata).lifetime == 30


def test_what_is_never_cached():
    no_soa = reply_bytes("nx.example.test", "A", rcode=3)
    truncated = reply_bytes("a.test", "A", ["192.0.2.1"],
                            flags=dns.flags.QR | dns.flags.TC)
    refused = reply_bytes("a.test", "A", rcode=5)
    formerr = reply_bytes("a.test", "A", rcode=1)
    cname_only = reply_bytes("a.test", "A", extra_answers=[("a.test", 60, "CNAME", "b.test.")])
    for data in (no_soa, truncated, refused, formerr, cname_only):
        assert decide(data).kind is Kind.UNCACHEABLE
    assert decide(reply_bytes("a.test", "A", rcode=2)).kind is Kind.SERVFAIL


def entry_for(data: bytes, clock: Clock, policy=CachePolicy()) -> Entry:
    reply = wire.parse_reply(data)
    decision = classify(reply, policy)
    template = render(reply, reply.qname, decision.ttls)
    return Entry(template, decision.kind, clock(), decision.lifetime, policy.stale_window, ".")


def test_ttls_count_down_per_second():
    clock = Clock()
    entry = entry_for(reply_bytes("a.test", "A", ["192.0.2.1"], ttl=300), clock)
    ttl_of = lambda: wire.parse_reply(
        b"\x00" * 2 + b"\x81\x80" + entry.template.counts + wire.text_to_name("a.test")
        + entry.template.qtail + entry.body_at(clock())).records[0].ttl
    assert ttl_of() == 300
    clock.time += 10.7
    assert ttl_of() == 290
    clock.time += 400
    assert ttl_of() == 0


def test_store_keeps_entries_through_the_stale_window_only():
    clock = Clock()
    cache = Cache(10, now=clock)
    entry = entry_for(reply_bytes("a.test", "A", ["192.0.2.1"], ttl=5), clock,
                      CachePolicy(stale_window=100))
    cache.put(b"k", entry)
    clock.time += 50
    assert cache.get(b"k") is entry and clock() > entry.expires
    clock.time += 60
    assert cache.get(b"k") is None and len(cache) == 0


def test_size_bound_evicts_least_recently_used():
    clock = Clock()
    cache = Cache(100, now=clock)
    entry = entry_for(reply_bytes("a.test", "A", ["192.0.2.1"]), clock)
    for i in range(1000):
        cache.put(b"key%d" % i, entry)
    assert len(cache) == 100 and cache.evictions == 900
    assert cache.get(b"key999") is entry and cache.get(b"key0") is None


def test_flush_one_name_drops_every_type_of_it():
    clock = Clock()
    cache = Cache(10, now=clock)
    entry = entry_for(reply_bytes("a.test", "A", ["192.0.2.1"]), clock)
    name = wire.text_to_name("a.test")
    cache.put(name + b"\x00\x01\x00\x01\x00", entry)
    cache.put(name + b"\x00\x1c\x00\x01\x00", entry)
    cache.put(wire.text_to_name("b.a.test") + b"\x00\x01\x00\x01\x00", entry)
    assert cache.flush(wire.text_to_name("A.test")) == 2 and len(cache) == 1
