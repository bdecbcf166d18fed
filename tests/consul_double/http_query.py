"""Query options of a read (agent/http.go parseDC, parseConsistency, parseWait) and timeouts."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from .gotime import parse_go_duration
from .http_config import HttpConfig
from .http_wire import Request

JITTER_FRACTION = 16  # agent/consul/server.go: wait + RandomStagger(wait / 16)
MAX_UINT64 = (1 << 64) - 1


class ApiError(Exception):
    """An error answer: status and Consul's text body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class QueryOptions:
    """dc (lowercased), index (0: do not block), wait (seconds, 0: default), consistency."""

    dc: str
    index: int
    wait: float
    consistency: str  # leader | stale | consistent


def _consistency(request: Request) -> str:
    stale = "stale" in request.query or "max_stale" in request.query
    consistent = "consistent" in request.query
    if stale and consistent:
        raise ApiError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    if consistent and "cached" in request.query:
        raise ApiError(400, "Cannot specify ?cached with ?consistent, conflicting semantics.")
    return "stale" if stale else "consistent" if consistent else "leader"


def _wait(request: Request) -> float:
    text = request.param("wait")
    if not text:
        return 0.0
    try:
        return parse_go_duration(text)
    except ValueError as exc:
        raise ApiError(400, "Invalid wait time") from exc


def _index(request: Request) -> int:
    text = request.param("index")
    if not text:
        return 0
    if not text.isascii() or not text.isdigit() or int(text) > MAX_UINT64:
        raise ApiError(400, "Invalid index")  # strconv.ParseUint(idx, 10, 64)
    return int(text)


def _reject_enterprise_meta(request: Request) -> None:
    """Consul CE refuses namespaces and partitions (agent/http_ce.go parseEntMeta)."""
    for header, param, feature in (("X-Consul-Namespace", "ns", "Namespaces"),
                                   ("X-Consul-Partition", "partition", "Partitions")):
        if request.header(header):
            raise ApiError(400, f'Invalid header: "{header}" - {feature} are a Consul '
                                f"Enterprise feature")
        if request.param(param):
            raise ApiError(400, f'Invalid query parameter: "{param}" - {feature} are a Consul '
                                f"Enterprise feature")


def parse_options(request: Request, default_dc: str) -> QueryOptions:
    """The options every blocking endpoint parses, in the agent's order; 400 on bad input."""
    _reject_enterprise_meta(request)
    dc = (request.param("dc") or default_dc).lower()
    consistency = _consistency(request)
    return QueryOptions(dc, _index(request), _wait(request), consistency)


def query_timeout(wait: float, config: HttpConfig, rng: random.Random) -> float:
    """How long a blocking query may hold: wait (<=0: default, capped at max) + jitter."""
    timeout = config.default_query_time if wait <= 0 else min(wait, config.max_query_time)
    return timeout + rng.uniform(0, timeout / JITTER_FRACTION)


class ChangeFeed:
    """One asyncio.Event per state generation: take current(), notify() sets it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()
