"""A Plan is everything about a reply that does not change from query to query.

Building one costs catalog lookups; it is cached per (question bytes, EDNS present)
in the Snapshot. What changes per query (Consul's shuffle, dedup after it, trimming,
the SOA serial, the OPT record) is applied by shaping.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .records import Record

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

# How the shuffled units become sections.
MODE_NONE = ""
MODE_RECORDS = "records"  # modern A/AAAA/ANY/TXT: dedup, CNAME fallback, a_record_limit
MODE_SRV = "srv"  # answers + additional per unit, dedup per unit key
MODE_NS_ANSWER = "ns-answer"  # NS query: up to 3 servers, NS in Answer
MODE_NS_AUTHORITY = "ns-authority"  # SOA query: NS in Authority

TRIM_NONE = ""
TRIM_MODERN = "modern"
TRIM_LEGACY = "legacy"


class Unit(NamedTuple):
    """The records one service instance (or server) contributes, before the shuffle."""

    answer: tuple[Record, ...]
    extra: tuple[Record, ...]
    key: object
    cname: bool = False


@dataclass(slots=True)
class Plan:
    """Fixed parts of a reply; units are shuffled and materialized per query."""

    rcode: int = NOERROR
    aa: bool = True
    ra: bool = False
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    units: tuple[Unit, ...] = ()
    mode: str = MODE_NONE
    a_limit: int = 0
    trim: str = TRIM_NONE
    legacy_empty_soa: Record | None = None
    ecs_global: bool = True
    recurse: bool = False
    rendered: dict = field(default_factory=dict)  # see handler.Handler._render


class Outcome(NamedTuple):
    """What a lookup found: an error kind or records/units (modern and 0.6.4 builders)."""

    error: str | None = None  # "nxdomain" | "nodata" | "servfail"
    answer: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    units: tuple[Unit, ...] = ()
    mode: str = MODE_NONE
    ecs_global: bool = True
    trimmable: bool = False


NXDOMAIN_OUTCOME = Outcome("nxdomain")
NODATA_OUTCOME = Outcome("nodata")
SERVFAIL_OUTCOME = Outcome("servfail")
