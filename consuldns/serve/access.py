"""ACCESS: which clients may use the resolver, and how fast. Everyone else gets REFUSED.

`acl.allow` networks (default: loopback and private ranges) keep the server from being an
open resolver. The optional per-client rate limit (`server.rate_limit`) is a token bucket per
client address; clients over their rate get REFUSED as well (CoreDNS's ratelimit plugin
answers the same way): a reply no bigger than the query, so the limit cannot be turned into
an amplifier. Off by default; when off the listeners use the plain AccessList and pay
nothing.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from cachetools import LRUCache

from consuldns.serve.stats import Stats

DEFAULT_ALLOW = (
    "127.0.0.0/8", "::1/128",  # loopback
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # RFC 6598 shared address space
    "169.254.0.0/16", "fe80::/10",  # link-local
    "fc00::/7",  # unique local
)
_MEMO_LIMIT = 65536


class AccessList:
    """Allowed client networks, with a memo so the per-packet check is one dict lookup."""

    def __init__(self, allow: list[str] | tuple[str, ...] = DEFAULT_ALLOW):
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allow]
        self._memo: dict[str, bool] = {}

    def allows(self, address: str) -> bool:
        verdict = self._memo.get(address)
        if verdict is None:
            verdict = self._check(address)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[address] = verdict
        return verdict

    def _check(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


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
