"""POLICY: an optional per-client query rate limit, checked where the ACL is.

A token bucket per client address. Clients over their rate get REFUSED, as clients outside
`acl.allow` do (CoreDNS's ratelimit plugin answers the same way): a reply no bigger than the
query, so the limit cannot be turned into an amplifier. Off by default; when off the
listeners use the plain AccessList and pay nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import LRUCache

from consuldns.acl import AccessList
from consuldns.stats import Stats

# Buckets kept. Beyond it the least recently seen client is forgotten, so a flood of spoofed
# sources cannot reset the buckets of the clients that are really sending.
_CLIENT_LIMIT = 65536


class RateLimitedAccess:
    """An AccessList that also refuses clients sending faster than `rate` queries per second."""

    def __init__(self, acl: AccessList, rate: float, burst: int, stats: Stats,
                 now: Callable[[], float] = time.monotonic):
        self.acl = acl
        self.rate = rate
        self.burst = float(burst or max(rate, 1.0))
        self.stats = stats
        self.now = now
        # address -> [tokens, last refill]
        self._buckets: LRUCache[str, list[float]] = LRUCache(maxsize=_CLIENT_LIMIT)

    def allows(self, address: str) -> bool:
        return self.acl.allows(address) and self._take(address)

    def _take(self, address: str) -> bool:
        now = self.now()
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            self.stats.rate_limited += 1
            return False
        bucket[0] = tokens - 1.0
        return True


def client_policy(allow: tuple[str, ...], rate: float, burst: int,
                  stats: Stats) -> AccessList | RateLimitedAccess:
    """The object listeners ask `allows(address)`: the ACL, rate-limited when rate > 0."""
    acl = AccessList(allow)
    if rate <= 0:
        return acl
    return RateLimitedAccess(acl, rate, burst, stats)
