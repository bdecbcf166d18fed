"""The open-files limit: raised to the hard limit at start, and a warning when the caps do
not fit under it (ops/descriptors.py)."""

from __future__ import annotations

import dataclasses
import resource

import pytest

from consuldns.ops import descriptors
from consuldns.ops.settings import Settings


@pytest.fixture
def limit():
    """Set the soft limit for a test; the original one comes back afterwards."""
    original = resource.getrlimit(resource.RLIMIT_NOFILE)

    def set_soft(soft: int) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, original[1]))

    yield set_soft
    resource.setrlimit(resource.RLIMIT_NOFILE, original)


def test_the_soft_limit_is_raised_to_the_hard_one(limit):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"hard limit {hard}: nothing to raise")
    limit(256)
    raised = descriptors.raise_limit()
    assert raised > 256 and resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised


def test_defaults_do_not_fit_under_1024_and_the_warning_says_what_to_do():
    warning = descriptors.check_fit(Settings(), 1024)
    assert warning is not None
    for part in ("open-files limit 1024", "server.max_inflight 1000",
                 "server.max_tcp_connections 200", "16 admin connections", "LimitNOFILE",
                 "ulimit -n", "lower server.max_inflight"):
        assert part in warning
    assert f"at least {descriptors.needed(Settings())}" in warning


def test_caps_that_fit_give_no_warning():
    assert descriptors.check_fit(Settings(), 65536) is None
    small = dataclasses.replace(Settings().server, max_inflight=500, max_tcp_connections=100)
    assert descriptors.check_fit(dataclasses.replace(Settings(), server=small), 1024) is None

