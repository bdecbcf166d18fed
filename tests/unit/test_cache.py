"""Cache rules (RFC 2308, RFC 8767) and the store, with an injected clock."""

import gc
import tracemalloc
from collections import OrderedDict

import dns.flags

from consuldns.dns import template, wire
from consuldns.dns.template import render
from consuldns.serve.cache import Cache, CachePolicy, Entry, Kind, classify
from tests.unit.fakes import Clock
from tests.unit.helpers import SOA_TEXT, reply_bytes


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


# ------------------------------------------------------------------ bounded in bytes


def txt_entry(name: str, clock: Clock, records: int = 16, length: int = 250) -> Entry:
    """A TXT answer of `records` distinct strings of `length` characters."""
    texts = [f'"{i:04d}{"x" * (length - 4)}"' for i in range(records)]
    return entry_for(reply_bytes(name, "TXT", texts), clock)


def key_of(name: str, rdtype: int = wire.TXT) -> bytes:
    return wire.question_key(wire.text_to_name(name), rdtype)


def test_byte_budget_evicts_least_recently_used_by_bytes():
    clock = Clock()
    cache = Cache(1000, max_bytes=200_000, now=clock)
    keys = [key_of(f"n{i}.bytes.test") for i in range(40)]
    for i, key in enumerate(keys):
        cache.put(key, txt_entry(f"n{i}.bytes.test", clock))  # ~11 KB counted each
        cache.get(keys[0])  # keep the first one in use
    assert 180_000 < cache.bytes <= 200_000
    assert cache.bytes == sum(Cache.cost(k, e) for k, e in cache.items())
    assert len(cache) < 20 and cache.evictions == 40 - len(cache)
    assert cache.get(keys[0]) is not None and cache.get(keys[-1]) is not None
    assert cache.get(keys[1]) is None


def test_entry_bound_holds_alongside_the_byte_budget():
    clock = Clock()
    cache = Cache(3, max_bytes=10_000_000, now=clock)
    for i in range(5):
        cache.put(key_of(f"n{i}.test"), entry_for(reply_bytes("a.test", "A", ["192.0.2.1"]),
                                                  clock))
    assert len(cache) == 3 and cache.bytes == sum(Cache.cost(k, e) for k, e in cache.items())


def test_a_reply_over_a_sixteenth_of_the_budget_is_answered_but_not_kept():
    clock = Clock()
    cache = Cache(100, max_bytes=1_000_000, now=clock)
    key = key_of("big.test")
    cache.put(key, txt_entry("big.test", clock, records=1, length=200))
    assert cache.get(key) is not None
    big = txt_entry("big.test", clock, records=120, length=250)  # 30 KB, ~67 KB counted
    assert Cache.cost(key, big) > 1_000_000 // 16
    cache.put(key, big)
    assert cache.get(key) is None and len(cache) == 0 and cache.bytes == 0
    assert cache.oversize == 1


def test_the_estimate_is_at_least_what_entries_really_hold(monkeypatch):
    """Cache.cost against tracemalloc, with nothing shared between templates."""
    monkeypatch.setattr(template, "SHARED_MAX_ITEMS", -1)
    clock = Clock()
    shapes = {"one A": lambda name: reply_bytes(name, "A", ["192.0.2.1"]),
              "40 A": lambda name: reply_bytes(name, "A", [f"10.0.0.{i}" for i in range(40)]),
              "16 TXT": lambda name: reply_bytes(name, "TXT", [f'"{i:04d}{"x" * 246}"'
                                                               for i in range(16)])}
    for shape, make in shapes.items():
        replies = [make(f"n{i}.cost.test") for i in range(200)]
        gc.collect()
        tracemalloc.start()
        cache = Cache(1000, max_bytes=1 << 40, now=clock)
        for data in replies:
            parsed = wire.parse_reply(data)  # the TTLs' int objects go to the template
            decision = classify(parsed, CachePolicy())
            entry = Entry(render(parsed, parsed.qname, decision.ttls), decision.kind, clock(),
                          decision.lifetime, 3600, ".")
            entry.body_at(clock() + 2)  # the counted-down copy a later hit keeps
            cache.put(wire.question_key(parsed.qname, parsed.qtype), entry)
        del parsed, decision, entry
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert held <= cache.bytes <= 1.15 * held, (shape, held, cache.bytes)


class NoScan(OrderedDict):
    """An LRU map that fails the test when something walks all of it."""

    def _scanned(self, *args):
        raise AssertionError("the whole cache was scanned")

    items = keys = values = __iter__ = _scanned


def test_flush_by_name_does_not_scan_the_cache():
    clock = Clock()
    cache = Cache(1000, now=clock)
    entry = entry_for(reply_bytes("a.test", "A", ["192.0.2.1"]), clock)
    for i in range(500):
        cache.put(key_of(f"n{i}.test", wire.A), entry)
    cache.put(key_of("n7.test", wire.AAAA), entry)
    cache._entries = NoScan(OrderedDict.items(cache._entries))
    assert cache.flush(wire.text_to_name("N7.test")) == 2
    assert cache.flush(wire.text_to_name("absent.test")) == 0
    assert len(cache) == 499


def test_flush_by_name_after_evictions_replacements_and_expiry():
    clock = Clock()
    cache = Cache(4, now=clock)
    short = entry_for(reply_bytes("a.test", "A", ["192.0.2.1"], ttl=1), clock,
                      CachePolicy(stale_window=0))
    lasting = entry_for(reply_bytes("a.test", "A", ["192.0.2.1"]), clock)
    cache.put(key_of("x.test", wire.A), lasting)
    cache.put(key_of("x.test", wire.A), lasting)  # replaced, not listed twice
    cache.put(key_of("x.test", wire.AAAA), short)
    for i in range(3):  # evicts x.test A (least recently used), keeps x.test AAAA
        cache.put(key_of(f"filler{i}.test", wire.A), lasting)
    assert cache.flush(wire.text_to_name("x.test")) == 1
    cache.put(key_of("x.test", wire.A), short)
    clock.time += 10
    assert cache.get(key_of("x.test", wire.A)) is None  # expired: dropped on the way
    assert cache.flush(wire.text_to_name("x.test")) == 0
    assert cache.flush(wire.text_to_name("filler1.test")) == 1
    assert len(cache) == 2 and cache.bytes == sum(Cache.cost(k, e) for k, e in cache.items())
    assert cache.flush() == 2 and cache.bytes == 0


def test_a_full_flush_gives_back_the_memory_of_every_template():
    clock = Clock()
    replies = [wire.parse_reply(reply_bytes(f"n{i}.flush.test", "TXT",
                                            [f'"{"x" * (i % 200 + j)}"' for j in range(5)]))
               for i in range(1000)]  # record lengths differ: offsets are rarely equal
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = Cache(10_000, now=clock)
    for parsed in replies:
        decision = classify(parsed, CachePolicy())
        cache.put(wire.question_key(parsed.qname, parsed.qtype),
                  Entry(render(parsed, parsed.qname, decision.ttls), decision.kind, clock(),
                        decision.lifetime, 3600, "."))
    filled = tracemalloc.get_traced_memory()[0] - before
    cache.flush()
    gc.collect()
    left = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert left < filled / 20, (left, filled)


def test_templates_of_many_records_are_never_kept_for_sharing():
    parsed = [wire.parse_reply(reply_bytes(f"n{i}.long.test", "A",
                                           [f"10.0.{i % 250}.{j}" for j in range(20 + i % 7)]))
              for i in range(500)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, reply in enumerate(parsed):  # TTLs differ between replies: no tuple is equal
        render(reply, reply.qname, [1000 + i for _ in reply.records])
    gc.collect()
    left = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert left < 20_000, left


def test_discard_keeps_the_byte_count_and_the_name_index_right():
    clock = Clock()
    cache = Cache(10, now=clock)
    entry = entry_for(reply_bytes("a.test", "A", ["192.0.2.1"]), clock)
    key = wire.question_key(wire.text_to_name("a.test"), wire.A)
    cache.put(key, entry)
    assert cache.bytes > 0
    cache.discard(key)
    cache.discard(key)  # nothing left: no error
    assert cache.bytes == 0 and len(cache) == 0
    assert cache.flush(name=wire.text_to_name("a.test")) == 0
