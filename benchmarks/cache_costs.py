"""What the cache costs: `python -m benchmarks.cache_costs` (a few seconds, no sockets).

- hit: Cache.get and Handler.answer_now on a fresh entry, microseconds per call (best of 5);
- memory: bytes per entry as tracemalloc sees them (small A answers and large TXT answers),
  next to the cache's own estimate (Cache.cost) when it has one;
- flush by name: milliseconds to flush one name out of a cache of --entries entries.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import dns.message
import dns.rrset

from consuldns.dns import wire
from consuldns.dns.template import render
from consuldns.serve.cache import Cache, CachePolicy, Entry, classify
from consuldns.serve.handler import Handler, Options
from consuldns.serve.router import Route, Router
from consuldns.upstream.group import Group


def reply(name: str, rdtype: str, texts: list[str], ttl: int = 300) -> wire.Reply:
    query = dns.message.make_query(name, rdtype)
    message = dns.message.make_response(query)
    message.answer.append(dns.rrset.from_text(name, ttl, "IN", rdtype, *texts))
    return wire.parse_reply(message.to_wire(max_size=65535))


def entry_for(parsed: wire.Reply, now: float) -> Entry:
    decision = classify(parsed, CachePolicy())
    template = render(parsed, parsed.qname, decision.ttls)
    return Entry(template, decision.kind, now, decision.lifetime, 3600, ".")


def make_cache(size: int) -> Cache:
    try:
        return Cache(size, max_bytes=1 << 40)
    except TypeError:  # before the byte budget
        return Cache(size)


def hit_cost() -> list[str]:
    cache = make_cache(1000)
    handler = Handler(cache, Options(router=Router([], Route(".", Group(".", []),
                                                             CachePolicy()))))
    name = "hit.bench.test."
    parsed = reply(name, "TXT", ['"x"'])
    key = wire.question_key(wire.text_to_name(name), wire.TXT)
    cache.put(key, entry_for(parsed, time.monotonic()))
    query = wire.build_query(7, wire.text_to_name(name), wire.TXT, 1)
    rounds = 200_000
    lines = []
    for label, call in (("Cache.get", lambda: cache.get(key)),
                        ("Handler.answer_now (hit)", lambda: handler.answer_now(query, False))):
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(rounds):
                call()
            best = min(best, time.perf_counter() - started)
        lines.append(f"{label:28s} {1e6 * best / rounds:6.3f} us")
    return lines


def memory(count: int, rdtype: str, texts: list[str], label: str) -> str:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = make_cache(count)
    now = time.monotonic()
    estimate = 0
    for i in range(count):
        parsed = reply(f"n{i}.memory.bench.test.", rdtype, texts)
        entry = entry_for(parsed, now)
        entry.body_at(now + 1.5)  # a hit a second later keeps a counted-down copy too
        key = wire.question_key(parsed.qname, parsed.qtype)
        cache.put(key, entry)
        estimate += getattr(Cache, "cost", lambda k, e: 0)(key, entry)
        del parsed
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    body = len(entry.template.body)
    shown = f", estimate {estimate / count:8.0f} B" if estimate else ""
    return (f"{label:28s} {used / count:8.0f} B/entry measured{shown} "
            f"(body {body} B, {len(cache)} entries)")


def flush_by_name(count: int) -> str:
    cache = make_cache(count)
    now = time.monotonic()
    parsed = reply("one.flush.bench.test.", "A", ["192.0.2.1"])
    entry = entry_for(parsed, now)
    for i in range(count):
        cache.put(wire.question_key(wire.text_to_name(f"n{i}.flush.bench.test"), wire.A), entry)
    names = [wire.text_to_name(f"n{i}.flush.bench.test") for i in range(0, count, count // 20)]
    started = time.perf_counter()
    for name in names:
        cache.flush(name)
    each = (time.perf_counter() - started) / len(names)
    return f"flush by name at {count} entries: {1e3 * each:8.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache_costs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args(argv)
    for line in hit_cost():
        print(line)
    print(memory(20_000, "A", ["192.0.2.1"], "small A answer"))
    print(memory(5_000, "A", [f"192.0.2.{i}" for i in range(1, 9)], "8 A records"))
    texts = [f'"{i:03d}' + "x" * 247 + '"' for i in range(200)]
    print(memory(300, "TXT", texts, "50 KB TXT answer"))
    print(flush_by_name(args.entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
