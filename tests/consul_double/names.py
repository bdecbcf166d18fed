"""Zone routing and query-name parsing, per profile, as Consul's ServeMux and dispatch do."""

from __future__ import annotations

from dataclasses import dataclass

from .records import TYPE_DS, TYPE_SRV

ROOT = "."
ARPA = "arpa."
MODERN_KEYWORDS = frozenset(("service", "connect", "virtual", "ingress", "node", "query", "addr"))


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a name asks for. datacenter "" means the agent's own; kind "invalid" is NXDOMAIN."""

    kind: str
    name: str = ""
    tag: str = ""
    datacenter: str = ""
    peer: str = ""


INVALID = Lookup("invalid")


def route(labels: tuple[str, ...], qtype: int, zones: frozenset[str],
          recursors: bool) -> str | None:
    """The zone whose handler answers, "." for the recursor, None for no handler.

    Mirrors miekg's ServeMux.match: the longest registered suffix wins, except that DS
    goes to the parent-most zone, and to "." whenever recursors are registered.
    """
    handler = None
    for i in range(len(labels)):
        suffix = ".".join(labels[i:]).lower() + "."
        if suffix in zones:
            if qtype != TYPE_DS:
                return suffix
            handler = suffix
    if recursors:
        return ROOT
    return handler


def response_domain(labels: tuple[str, ...], domain: str, alt_domain: str) -> str:
    """The longest suffix of the question (client's case) equal to the domain or alt domain."""
    found = domain
    for i in range(len(labels) - 1, -1, -1):
        suffix = ".".join(labels[i:]) + "."
        if suffix.lower() in (domain, alt_domain):
            found = suffix
    return found


def strip_zone(labels: tuple[str, ...], zone: str) -> list[str]:
    """Lowercased labels left of the zone."""
    zone_labels = zone.count(".")
    return [label.lower() for label in labels[:len(labels) - zone_labels]]


def _modern_locality(suffixes: list[str]) -> tuple[str, str] | None:
    """(datacenter, peer) from <dc>, <dc>.dc, <peer>.peer; None when invalid."""
    if not suffixes:
        return "", ""
    if len(suffixes) == 1:
        return suffixes[0], ""
    if len(suffixes) not in (2, 4):
        return None
    datacenter = peer = ""
    for value, kind in zip(suffixes[0::2], suffixes[1::2]):
        if kind == "dc":
            datacenter = value
        elif kind == "peer":
            peer = value
        else:
            return None
    if datacenter and peer:
        return None
    return datacenter, peer


def _modern_service(parts: list[str], suffixes: list[str]) -> Lookup:
    locality = _modern_locality(suffixes)
    if not parts or locality is None:
        return INVALID
    dc, peer = locality
    if len(parts) == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
        tag = parts[1][1:]
        return Lookup("service", parts[0][1:], "" if tag == "tcp" else tag, dc, peer)
    return Lookup("service", parts[-1], ".".join(parts[:-1]), dc, peer)


def _modern_query(parts: list[str], suffixes: list[str]) -> Lookup:
    if not parts or len(suffixes) > 1:
        return INVALID
    dc = suffixes[0] if suffixes else ""
    if len(parts) >= 2 and parts[0].startswith("_") and parts[-1].startswith("_"):
        return Lookup("query", ".".join(parts[:-1])[1:], "", dc)
    return Lookup("query", ".".join(parts), "", dc)


def _modern_other(kind: str, parts: list[str], suffixes: list[str]) -> Lookup:
    if kind == "addr":
        # The addr endpoint ignores the locality labels entirely.
        return Lookup("addr", parts[0]) if len(parts) == 1 else INVALID
    locality = _modern_locality(suffixes)
    if not parts or locality is None:
        return INVALID
    dc, peer = locality
    if kind == "node":
        return Lookup("node", ".".join(parts), "", dc, peer)
    return Lookup(kind, parts[-1], "", dc, peer)


def parse_modern(labels: list[str], qtype: int) -> Lookup:
    """Scan from the right; the first keyword wins (agent/dns.go dispatch)."""
    for i in range(len(labels) - 1, -1, -1):
        label = labels[i]
        if label in MODERN_KEYWORDS:
            kind, parts, suffixes = label, labels[:i], labels[i + 1:]
            break
        if qtype == TYPE_SRV and label.startswith("_"):
            # For SRV the "service" label is optional: _web._tcp.consul.
            kind, parts, suffixes = "service", labels[:i + 1], labels[i + 1:]
            break
    else:
        return INVALID
    if kind == "service":
        return _modern_service(parts, suffixes)
    if kind == "query":
        return _modern_query(parts, suffixes)
    return _modern_other(kind, parts, suffixes)


def parse_legacy(labels: list[str]) -> Lookup:
    """0.6.4: the last label is service/node/query, or else a datacenter; repeat."""
    dc = ""
    while labels:
        n = len(labels)
        last = labels[-1]
        if last == "service" and n > 1:
            if n == 3 and labels[0].startswith("_") and labels[1].startswith("_"):
                tag = labels[1][1:]
                return Lookup("service", labels[0][1:], "" if tag == "tcp" else tag, dc)
            return Lookup("service", labels[n - 2], ".".join(labels[:n - 2]), dc)
        if last in ("node", "query") and n > 1:
            return Lookup(last, ".".join(labels[:-1]), "", dc)
        if last in ("service", "node", "query"):
            return INVALID
        dc = last
        labels = labels[:-1]
    return INVALID
