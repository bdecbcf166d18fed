"""CACHE: what may be cached and for how long (RFC 2308, RFC 8767), and the bounded store.

The rules live in one pure function, `classify`; the store is an LRU map from the
normalised question (see wire.cache_key) to an Entry holding a rendered reply template.
The clock is injected so tests control time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from consuldns.dns import wire
from consuldns.dns.template import Template


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


class _CountingLRU(OrderedDict):
    """An LRU map that counts evictions. OrderedDict is C code: a hit costs a lookup and a
    move_to_end (~0.1 us), where cachetools' LRUCache.get runs Python methods (~0.5 us)."""

    def __init__(self, maxsize: int):
        super().__init__()
        self.maxsize = maxsize
        self.evictions = 0


class Cache:
    """The bounded reply cache."""

    def __init__(self, size: int, now: Callable[[], float] = time.monotonic):
        self.now = now
        self._entries: _CountingLRU = _CountingLRU(maxsize=max(size, 1))
        self.enabled = size > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def evictions(self) -> int:
        return self._entries.evictions

    def get(self, key: bytes) -> Entry | None:
        """The entry for key, fresh or within its stale window; None otherwise."""
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            if self.now() > entry.stale_until:
                del entries[key]
                return None
            entries.move_to_end(key)
        return entry

    def peek(self, key: bytes) -> Entry | None:
        """The entry for key as it is, without counting it as used."""
        return self._entries.get(key)

    def discard(self, key: bytes) -> None:
        """Drop the entry for key, if there is one."""
        self._entries.pop(key, None)

    def put(self, key: bytes, entry: Entry) -> None:
        if self.enabled:
            entries = self._entries
            entries[key] = entry
            entries.move_to_end(key)
            if len(entries) > entries.maxsize:
                entries.popitem(last=False)
                entries.evictions += 1

    def flush(self, name: bytes | None = None, zones: set[str] | None = None) -> int:
        """Drop every entry, those for one name (any type), or those of some zones."""
        if name is None and zones is None:
            count = len(self._entries)
            self._entries.clear()
            return count
        folded = name.lower() if name is not None else None
        doomed = [key for key, entry in self._entries.items()
                  if (folded is not None and wire.key_name(key) == folded)
                  or (zones is not None and entry.zone in zones)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def items(self) -> list[tuple[bytes, Entry]]:
        return list(self._entries.items())
