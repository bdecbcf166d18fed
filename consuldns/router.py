"""ROUTE: pick the upstream group of a name by the longest label-wise zone suffix.

`x.notconsul.` is not under `consul.`: zones are compared as whole labels, case-folded, by
looking up each suffix of the name's wire form, longest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consuldns import wire
from consuldns.cache import CachePolicy


@dataclass(slots=True)
class Route:
    """Where the names of one zone go and how their answers are cached."""

    zone: str  # presentation form, "." for the default route
    group: object  # upstream.Group (kept untyped here: the router is pure)
    policy: CachePolicy = field(default_factory=CachePolicy)
    fallback: object | None = None  # a group asked when the first has no answer (reverse zones)
    is_agent: bool = False


class Router:
    """Longest-suffix match from zone names to routes."""

    def __init__(self, routes: list[Route], default: Route):
        self.default = default
        self._by_suffix: dict[bytes, Route] = {}
        for route in routes:
            self._by_suffix[wire.text_to_name(route.zone).lower()] = route

    @property
    def routes(self) -> list[Route]:
        return [*self._by_suffix.values(), self.default]

    def route(self, qname: bytes) -> Route:
        """The route of the zone that is the longest suffix of qname (wire form)."""
        folded = qname.lower()
        offset = 0
        while folded[offset]:
            route = self._by_suffix.get(folded[offset:])
            if route is not None:
                return route
            offset += folded[offset] + 1
        return self.default
