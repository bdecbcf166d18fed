"""The per-client rate limit: a token bucket per address, behind the ACL."""

from __future__ import annotations

from consuldns.serve.access import AccessList, RateLimitedAccess, client_policy
from consuldns.serve.stats import Stats
from tests.unit.fakes import Clock


def limited(rate: float, burst: int, clock: Clock, stats: Stats) -> RateLimitedAccess:
    return RateLimitedAccess(AccessList(["127.0.0.0/8"]), rate, burst, stats, now=clock)


def test_burst_then_refused_then_refilled():
    clock, stats = Clock(), Stats()
    policy = limited(rate=2, burst=3, clock=clock, stats=stats)
    assert [policy.allows("127.0.0.1") for _ in range(5)] == [True, True, True, False, False]
    assert stats.rate_limited == 2
    clock.advance(0.5)  # one token back at 2 per second
    assert [policy.allows("127.0.0.1") for _ in range(2)] == [True, False]


def test_clients_have_their_own_buckets_and_the_acl_still_applies():
    clock, stats = Clock(), Stats()
    policy = limited(rate=1, burst=1, clock=clock, stats=stats)
    assert policy.allows("127.0.0.1") and not policy.allows("127.0.0.1")
    assert policy.allows("127.0.0.2")
    assert not policy.allows("192.0.2.1")  # outside the ACL: refused, not rate limited
    assert stats.rate_limited == 1


def test_burst_defaults_to_one_second_of_rate():
    clock = Clock()
    policy = limited(rate=4, burst=0, clock=clock, stats=Stats())
    assert sum(policy.allows("127.0.0.1") for _ in range(10)) == 4


def test_off_means_the_plain_acl():
    assert type(client_policy(("127.0.0.0/8",), 0, 0, Stats())) is AccessList
