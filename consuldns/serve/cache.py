"""CACHE: what may be cached and for how long (RFC 2308, RFC 8767), and the bounded store.

The rules live in one pure function, `classify`; the store is an LRU map from the
normalised question (see wire.cache_key) to an Entry holding a rendered reply template,
bounded in entries and in bytes. The clock is injected so tests control time.
"""

from __future__ import annotations

import time
from bisect import bisect
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from consuldns.dns import wire
from consuldns.dns.template import Template, forget_shared


class State(Enum):
    """Where an entry stands at a moment (Entry.state)."""

    FRESH = "fresh"
    STALE = "stale"  # expired, within its stale window, and servable stale (RFC 8767)
    EXPIRED = "expired"  # expired and not to be served


class Kind(Enum):
    """What an upstream reply means for the cache."""

    POSITIVE = "positive"
    NEGATIVE = "negative"  # NXDOMAIN or NODATA with an SOA (RFC 2308)
    SERVFAIL = "servfail"
    UNCACHEABLE = "uncacheable"


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Per-zone cache settings, in seconds (the [cache.consul], [cache.default] and
    [cache.zones."NAME"] tables of the config file)."""

    min_ttl: int = 0
    max_ttl: int = 86400
    neg_min_ttl: int = 0
    neg_max_ttl: int = 3600
    watch_ttl: int = 300  # how long a watched answer may be kept ([cache.consul] only)
    watch_settle: float = 2.0  # seconds after a change before answers are kept so ([cache.consul])
    servfail_ttl: int = 2
    stale_window: int = 3600
    stale_ttl: int = 30


@dataclass(frozen=True, slots=True)
class Decision:
    """How to store one reply: its kind, how long it stays fresh and each record's TTL."""

    kind: Kind
    lifetime: int
    ttls: list[int]


def classify(reply: wire.Reply, policy: CachePolicy) -> Decision:
    """Decide whether and how long a reply is cached, and the TTLs clients are shown."""
    original = [r.ttl for r in reply.records]
    if reply.truncated:
        return Decision(Kind.UNCACHEABLE, 0, original)
    if reply.rcode == wire.SERVFAIL:
        return Decision(Kind.SERVFAIL, policy.servfail_ttl, original)
    if reply.rcode not in (wire.NOERROR, wire.NXDOMAIN):
        return Decision(Kind.UNCACHEABLE, 0, original)  # REFUSED, FORMERR, NOTIMP, ...
    if reply.rcode == wire.NOERROR and _answers_question(reply):
        ttls = [_clamp(ttl, policy.min_ttl, policy.max_ttl) for ttl in original]
        lifetime = min(t for r, t in zip(reply.records, ttls) if r.section == 0)
        return Decision(Kind.POSITIVE, lifetime, ttls)
    soa = next((r for r in reply.records if r.section == 1 and r.rtype == wire.SOA), None)
    if soa is None:
        # RFC 2308 §5: without an SOA a negative answer carries no lifetime to cache it by.
        return Decision(Kind.UNCACHEABLE, 0, original)
    negative = min(soa.ttl, wire.soa_minimum(soa.rdata))
    lifetime = _clamp(negative, policy.neg_min_ttl, policy.neg_max_ttl)
    ttls = [lifetime if r is soa else min(t, lifetime) for r, t in zip(reply.records, original)]
    return Decision(Kind.NEGATIVE, lifetime, ttls)


def _answers_question(reply: wire.Reply) -> bool:
    """True when the answer holds the asked type (or any type for ANY) at the end of CNAMEs."""
    for record in reply.records:
        if record.section != 0:
            break
        if record.rtype == reply.qtype or reply.qtype == wire.ANY:
            return True
        if record.rtype not in (wire.CNAME, wire.DNAME):
            return True  # an answer of another type still answers (e.g. Consul's A for TXT)
    return False


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


class Entry:
    """A cached reply: its template, when it stops being fresh, and until when it may go stale."""

    __slots__ = (
        "_age",
        "_body",
        "expires",
        "failed_until",
        "hits",
        "kind",
        "natural_expires",
        "refreshing",
        "stale_ttl",
        "stale_until",
        "stale_window",
        "stored",
        "template",
        "zone",
    )

    def __init__(self, template: Template, kind: Kind, stored: float, lifetime: int,
                 stale_window: int, zone: str, stale_ttl: int = 30):
        self.template = template
        self.kind = kind
        self.stored = stored
        self.expires = self.natural_expires = stored + lifetime
        self.stale_window = stale_window
        self.stale_until = self.expires + stale_window
        self.zone = zone
        self.stale_ttl = stale_ttl
        self.hits = 0
        self.refreshing = False
        self.failed_until = 0.0  # while upstream keeps failing, stale is served at once
        self._age = 0
        self._body = template.body

    def pin(self, until: float) -> None:
        """Keep the entry fresh until `until`, past its own lifetime: a watch of the agent's
        HTTP API vouches for it (consul/watch.py). Clients still see its own TTLs."""
        self.expires = max(self.expires, until)
        self.stale_until = max(self.stale_until, until)

    def unpin(self) -> None:
        """Back to the entry's own lifetime (the watch that vouched for it stopped)."""
        self.expires = self.natural_expires
        self.stale_until = self.natural_expires + self.stale_window

    def state(self, now: float) -> State:
        """Fresh, stale (servable while upstream fails) or expired, at `now`."""
        if now < self.expires:
            return State.FRESH
        if now < self.stale_until and self.servable_stale:
            return State.STALE
        return State.EXPIRED

    @property
    def servable_stale(self) -> bool:
        """Answers with data and NODATA go stale, NXDOMAIN never (it would hide a recovered
        service). A stale NODATA keeps nginx's AAAA from turning an outage into a failed name."""
        return self.kind is Kind.POSITIVE or (
            self.kind is Kind.NEGATIVE and self.template.rcode == wire.NOERROR)

    @property
    def prefetch_margin(self) -> float:
        """Refresh a hot entry in its last tenth of life (at least its last second)."""
        return max((self.expires - self.stored) / 10, 1.0)

    def stale_body(self) -> bytes:
        """The records with the RFC 8767 stale TTL."""
        return self.template.body_with_ttls([self.stale_ttl] * len(self.template.ttls))

    def body_at(self, now: float) -> bytes:
        """The records with their TTLs counted down to now (memoised per whole second)."""
        age = int(now - self.stored)
        if age != self._age:
            self._age = age
            self._body = self.template.body_with_ttls(
                [ttl - age if ttl > age else 0 for ttl in self.template.ttls])
        return self._body


# What an entry costs besides its key and its records' bytes, fitted to tracemalloc on
# CPython 3.11, 64-bit, with nothing shared between templates (`python -m
# benchmarks.cache_costs`; tests/unit/test_cache.py holds the estimate to within 15 % above
# the measure). The body is counted twice: a hit a second or more after the store keeps a
# copy with the TTLs counted down (Entry.body_at). Measured: a one-A answer 943 bytes
# (estimate 1 007), 40 A records 5 874 (6 193), 200 TXT records of 52 KB 129 295 (130 107).
ENTRY_OVERHEAD = 850  # Entry, Template, their floats, the key's and name's bytes objects,
#                       the LRU's node and slots, the name index's slot and list
RECORD_OVERHEAD = 64  # per record: a slot in 3 tuples, the TTL's int object
FAR_RECORD_OVERHEAD = 56  # per record ending past offset 256: two more int objects
RUN_OVERHEAD = 100  # per run of shuffleable records: a tuple of two ints
# One entry may take at most this share of the byte budget: at the default 64 MiB no DNS
# reply (65 535 octets at most) comes near it; with a small budget one reply cannot evict
# more than a sixteenth of the cache. Larger replies are answered, just not kept.
ENTRY_SHARE = 16


class Cache:
    """The reply cache: an LRU bounded both in entries and in bytes (Cache.cost), with an
    index of keys by name so that flushing one name does not scan the cache."""

    def __init__(self, size: int, max_bytes: int = 64 << 20,
                 now: Callable[[], float] = time.monotonic):
        self.now = now
        # OrderedDict is C code: a hit costs a lookup and a move_to_end (~0.1 us), where
        # cachetools' LRUCache.get runs Python methods (~0.5 us).
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._names: dict[bytes, list[bytes]] = {}  # wire.key_name(key) -> its keys
        self.bytes = 0
        self.evictions = 0
        self.oversize = 0  # replies not kept because one would take over ENTRY_SHARE
        self.resize(size, max_bytes)

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def cost(key: bytes, entry: Entry) -> int:
        """The bytes an entry holds in the cache (an estimate, see ENTRY_OVERHEAD)."""
        template = entry.template
        ends = template.ends
        far = len(ends) - bisect(ends, 256)
        return (ENTRY_OVERHEAD + 2 * len(key) + 2 * len(template.body)
                + RECORD_OVERHEAD * len(ends) + FAR_RECORD_OVERHEAD * far
                + RUN_OVERHEAD * len(template.runs))

    def resize(self, size: int, max_bytes: int) -> None:
        """Set both bounds (start-up, reload) and evict what no longer fits."""
        self.size, self.max_bytes = size, max_bytes
        self.enabled = size > 0 and max_bytes > 0
        self.max_entry_bytes = max_bytes // ENTRY_SHARE
        self._evict()

    def get(self, key: bytes, now: float | None = None) -> Entry | None:
        """The entry for key, fresh or within its stale window; None otherwise. A caller that
        has read the clock passes `now` (the hit path reads it once)."""
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            if (self.now() if now is None else now) > entry.stale_until:
                self._remove(key)
                return None
            entries.move_to_end(key)
        return entry

    def peek(self, key: bytes) -> Entry | None:
        """The entry for key as it is, without counting it as used."""
        return self._entries.get(key)

    def discard(self, key: bytes) -> None:
        """Drop the entry for key, if there is one."""
        if key in self._entries:
            self._remove(key)

    def put(self, key: bytes, entry: Entry) -> None:
        """Store entry under key (replacing any), then evict the least recently used until
        both bounds hold. A reply over max_entry_bytes is not kept, nor what it replaces."""
        if key in self._entries:
            self._remove(key)
        if not self.enabled:
            return
        cost = self.cost(key, entry)
        if cost > self.max_entry_bytes:
            self.oversize += 1
            return
        self._entries[key] = entry
        self.bytes += cost
        self._names.setdefault(wire.key_name(key), []).append(key)
        self._evict()

    def _evict(self) -> None:
        entries = self._entries
        limit = self.max_bytes if self.enabled else 0
        while entries and (len(entries) > self.size or self.bytes > limit):
            self._remove(next(iter(entries)))
            self.evictions += 1

    def _remove(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self.bytes -= self.cost(key, entry)
        name = wire.key_name(key)
        keys = self._names[name]
        keys.remove(key)
        if not keys:
            del self._names[name]

    def flush(self, name: bytes | None = None, zones: set[str] | None = None) -> int:
        """Drop every entry, those for one name (any type), or those of some zones."""
        if name is None and zones is None:
            count = len(self._entries)
            self._entries.clear()
            self._names.clear()
            self.bytes = 0
            forget_shared()  # what only the dropped entries used goes with them
            return count
        if name is not None:
            doomed = list(self._names.get(name.lower(), ()))
        else:
            doomed = [key for key, entry in self._entries.items() if entry.zone in zones]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def items(self) -> list[tuple[bytes, Entry]]:
        return list(self._entries.items())

    def entries(self) -> list[Entry]:
        return list(self._entries.values())
