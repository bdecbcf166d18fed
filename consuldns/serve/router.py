"""ROUTE: pick the upstream group of a name by the longest label-wise zone suffix.

`x.notconsul.` is not under `consul.`: zones are compared as whole labels, case-folded, by
looking up each suffix of the name's wire form, longest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consuldns.dns import wire
from consuldns.serve.cache import CachePolicy
from consuldns.upstream.group import Group


@dataclass(slots=True)
class Route:
    """Where the names of one zone go and how their answers are cached."""

    zone: str  # presentation form, "." for the default route
    group: Group
    policy: CachePolicy = field(default_factory=CachePolicy)
    fallback: Group | None = None  # asked when the first group has no answer (reverse zones)
    is_agent: bool = False
    timeout: float = 2.0  # the deadline of one client query on this route, in seconds

    def signature(self) -> tuple:
        """What decides the answers cached for the zone: who is asked, how, the cache policy."""
        fallback = self.fallback.signature() if self.fallback is not None else ()
        return self.group.signature(), fallback, self.policy, self.is_agent


ROUTED_MEMO_SIZE = 4096  # names whose route is remembered (cleared when full)


class Router:
    """Longest-suffix match from zone names to routes."""

    def __init__(self, routes: list[Route], default: Route):
        self.default = default
        self._by_suffix: dict[bytes, Route] = {}
        for route in routes:
            self._by_suffix[wire.text_to_name(route.zone).lower()] = route
        self._by_name: dict[bytes, Route] = {}  # names routed lately, as clients spell them

    @property
    def routes(self) -> list[Route]:
        return [*self._by_suffix.values(), self.default]

    def route(self, qname: bytes) -> Route:
        """The route of the zone that is the longest suffix of qname (wire form)."""
        route = self._by_name.get(qname)
        if route is None:
            if len(self._by_name) >= ROUTED_MEMO_SIZE:
                self._by_name.clear()
            route = self._by_name[qname] = self._longest_suffix(qname)
        return route

    def _longest_suffix(self, qname: bytes) -> Route:
        folded = qname.lower()
        offset = 0
        while folded[offset]:
            route = self._by_suffix.get(folded[offset:])
            if route is not None:
                return route
            offset += folded[offset] + 1
        return self.default

    @property
    def longest_timeout(self) -> float:
        """The longest deadline of any route: how long a query may wait for upstream."""
        return max(route.timeout for route in self.routes)

    def groups(self) -> list[tuple[Group, str]]:
        """Every distinct group, with the zone it serves first (for probes and metrics)."""
        seen: dict[int, tuple[Group, str]] = {}
        for route in self.routes:
            for group in (route.group, route.fallback):
                if group is not None and id(group) not in seen:
                    seen[id(group)] = (group, route.zone)
        return list(seen.values())
