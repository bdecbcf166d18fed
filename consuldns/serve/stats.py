"""Plain counters bumped on the query path; the admin listener exposes them as metrics.

Integers on one object cost a few nanoseconds per bump, which the cache-hit path can afford;
a labelled Prometheus counter per packet could not be.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

# Upper bounds (seconds) of the upstream latency histogram: loopback agents answer in well
# under a millisecond, remote resolvers in tens to hundreds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Stats:
    """Counters of one process."""

    def __init__(self) -> None:
        self.queries: Counter[str] = Counter()  # by transport
        self.rcodes: Counter[int] = Counter()
        self.stale = 0
        self.coalesced = 0
        self.coalesced_dropped = 0  # turned away: too many already waited on the exchange
        self.late_answers = 0  # upstream answers that came after the deadline, cached
        self.refreshes = 0  # background prefetch / stale refreshes that succeeded
        self.upstream_replies = 0
        self.truncated = 0
        self.dropped = 0  # unreadable packets, not answered
        self.malformed = 0  # answered with FORMERR or NOTIMP
        self.refused = 0
        self.servfail = 0
        self.overload = 0  # over the exchange (or the client's share) or connection caps
        self.rate_limited = 0  # refused because the client went over server.rate_limit
        self.zone_hits: Counter[str] = Counter()  # fresh cache hits by route zone
        self.zone_misses: Counter[str] = Counter()  # queries that went to the slow path
        self.upstream_latency: dict[object, LatencyHistogram] = {}  # by upstream.Server
        self.reloads: Counter[str] = Counter()  # by result: success, failure
        # The watch of the agent's HTTP API (consul/watch.py).
        self.watch_wakeups = 0  # blocking queries that returned
        self.watch_changes = 0  # ... with a change DNS can show
        self.watch_invalidations = 0  # cached answers dropped because of such a change
        self.watch_resets = 0  # the index went backwards
        self.watch_fallbacks = 0  # watches that stopped vouching for their answers
        self.watch_http_errors: Counter[str] = Counter()  # by HTTP status ("none": no reply)
        self.last_reload_ok = True

    @property
    def cache_hits(self) -> int:
        """Fresh cache hits, all zones."""
        return sum(self.zone_hits.values())

    def observe_upstream(self, server: object, seconds: float) -> None:
        """Record how long an upstream server took to give the answer that was used."""
        histogram = self.upstream_latency.get(server)
        if histogram is None:
            histogram = self.upstream_latency[server] = LatencyHistogram()
        histogram.observe(seconds)


class LatencyHistogram:
    """Counts per LATENCY_BUCKETS bucket (not cumulative; the last is +Inf) and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them, ending with +Inf."""
        pairs, running = [], 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.counts):
            running += count
            pairs.append((bound, running))
        return pairs
