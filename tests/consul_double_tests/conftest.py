"""Fixtures for the double's own tests: shared doubles per profile, and a factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.consul_double.process import start_double, start_in_thread
from tests.consul_double_tests import catalogs

PROFILES = ("modern", "0.6.4")


@pytest.fixture(scope="session")
def shared_doubles() -> Iterator[dict[str, Any]]:
    """One subprocess double per profile with catalogs.base(); tests must not mutate them."""
    doubles = {profile: start_double(catalogs.base(), profile) for profile in PROFILES}
    yield doubles
    for double in doubles.values():
        double.stop()


@pytest.fixture
def modern(shared_doubles: dict[str, Any]) -> Any:
    return shared_doubles["modern"]


@pytest.fixture
def legacy(shared_doubles: dict[str, Any]) -> Any:
    return shared_doubles["0.6.4"]


@pytest.fixture(params=PROFILES)
def double(request: pytest.FixtureRequest, shared_doubles: dict[str, Any]) -> Any:
    """Each profile in turn, for facts both profiles share."""
    return shared_doubles[request.param]


@pytest.fixture
def make_double() -> Iterator[Callable[..., Any]]:
    """make_double(profile="modern", catalog=None, **config): a fresh in-process double."""
    started = []

    def make(profile: str = "modern", catalog: dict | None = None, **config: Any) -> Any:
        double = start_in_thread(catalogs.base() if catalog is None else catalog, profile,
                                 **config)
        started.append(double)
        return double

    yield make
    for double in started:
        double.stop()
