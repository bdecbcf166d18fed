"""Fixtures of the end-to-end tests besides tests/conftest.py's servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.fake_upstream import FakeUpstream, Handler


@pytest.fixture
def fakes() -> Iterator[Callable[[Handler], FakeUpstream]]:
    """start(handle) -> a scripted FakeUpstream on loopback, stopped at the end of the test."""
    started: list[FakeUpstream] = []

    def start(handle: Handler) -> FakeUpstream:
        started.append(FakeUpstream(handle))
        return started[-1]

    yield start
    for fake in started:
        fake.stop()
