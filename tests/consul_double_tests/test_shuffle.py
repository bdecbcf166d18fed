"""Consul shuffles instances (Fisher-Yates) on every lookup; NS answers too.

The statistics here cannot pass with any fixed order, and a true uniform shuffle fails
them with a probability below 1e-5.
"""

from __future__ import annotations

from collections import Counter

from tests.consul_double_tests.catalogs import BIG_COUNT
from tests.consul_double_tests.dnsclient import ask, rdatas

BIG = "big.service.consul"
DRAWS = 300


def test_every_instance_leads_the_answer_about_equally_often(double):
    # Trimming keeps the head of the shuffled list, so UDP answers show the shuffle too.
    first = Counter(rdatas(ask(double, BIG).answer)[0] for _ in range(DRAWS))
    assert len(first) == BIG_COUNT  # each of 20 addresses came first at least once
    assert max(first.values()) < 40  # expected 15 each


def test_udp_trimming_returns_different_subsets(double):
    subsets = {frozenset(rdatas(ask(double, BIG).answer)) for _ in range(60)}
    assert len(subsets) >= 20  # C(20, 3) = 1140 possible


def test_srv_order_is_shuffled(double):
    firsts = {rdatas(ask(double, "web.service.consul", "SRV").answer)[0] for _ in range(60)}
    assert len(firsts) == 3


def test_modern_ns_answers_pick_three_random_servers(modern):
    picks = {frozenset(rdatas(ask(modern, "consul.", "NS").answer)) for _ in range(60)}
    assert len(picks) == 4  # every 3-of-4 subset appears


def test_consecutive_answers_differ(double):
    orders = [tuple(rdatas(ask(double, BIG, tcp=True).answer)) for _ in range(5)]
    assert len(set(orders)) == 5
