"""Plain counters bumped on the query path; the admin listener exposes them as metrics.

Integers on one object cost a few nanoseconds per bump, which the cache-hit path can afford;
a labelled Prometheus counter per packet could not be.
"""

from __future__ import annotations

from collections import Counter


class Stats:
    """Counters of one process."""

    def __init__(self) -> None:
        self.queries: Counter[str] = Counter()  # by transport
        self.rcodes: Counter[int] = Counter()
        self.cache_hits = 0
        self.cache_misses = 0
        self.stale = 0
        self.coalesced = 0
        self.upstream_replies = 0
        self.truncated = 0
        self.dropped = 0  # unreadable packets, not answered
        self.malformed = 0  # answered with FORMERR or NOTIMP
        self.refused = 0
        self.servfail = 0
        self.overload = 0  # over the in-flight or connection caps
