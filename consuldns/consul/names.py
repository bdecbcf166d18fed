"""Which Consul service a DNS name is about, for watching it over the HTTP API.

The agent parses a name under its domain from the right: an optional locality (`<dc>`,
`<dc>.dc`, `<peer>.peer`, `<dc>.dc.<peer>.peer`), then a keyword. `service` names are
`[<tag>.]<svc>.service` or `_<svc>._<tag|tcp>[.service]` (RFC 2782); `connect` and `ingress`
names are `<svc>.connect` and `<svc>.ingress`. All of them, any tag and any type, are one
watch: the health of the service's instances (`/v1/health/<kind>/<svc>`). Node, prepared
query, `.addr` and `.virtual` names, Enterprise namespaces and partitions, and names the
agent would not parse are not watched: they keep their TTL rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from consuldns.dns import wire

WATCHED_KINDS = {b"service": "service", b"connect": "connect", b"ingress": "ingress"}
OTHER_KEYWORDS = frozenset({b"node", b"query", b"addr", b"virtual"})


@dataclass(frozen=True, slots=True)
class WatchKey:
    """One blocking query's worth: a service of one kind, in a datacenter or a peer."""

    kind: str  # "service", "connect" or "ingress": the /v1/health/<kind>/ endpoint
    service: str  # lowercase: Consul matches service names case-insensitively
    dc: str = ""
    peer: str = ""

    @property
    def path(self) -> str:
        return f"/v1/health/{self.kind}/{self.service}"

    def params(self) -> dict[str, str]:
        """Query parameters besides index and wait."""
        found = {"dc": self.dc, "peer": self.peer}
        return {name: value for name, value in found.items() if value}

    def __str__(self) -> str:
        where = "".join(f" {name}={value}" for name, value in self.params().items())
        return f"{self.kind} {self.service}{where}"


def domain_labels(domains: tuple[bytes, ...]) -> tuple[list[bytes], ...]:
    """The labels of each Consul domain (wire form, case-folded), read once for watch_key;
    the root, which would match every name, is left out."""
    return tuple(labels for labels in map(wire.name_labels, domains) if labels)


def watch_key(qname: bytes, domains: tuple[list[bytes], ...]) -> WatchKey | None:
    """The watch of a wire-form name under one of the Consul domains (their labels, from
    domain_labels), or None when the name is not a watchable service name."""
    labels = wire.name_labels(qname)
    for suffix in domains:
        if labels[-len(suffix):] == suffix:
            return _parse(labels[:-len(suffix)])
    return None


def _parse(labels: list[bytes]) -> WatchKey | None:
    """Labels before the domain, leftmost first."""
    for position in range(len(labels) - 1, -1, -1):
        label = labels[position]
        if label in OTHER_KEYWORDS:
            return None
        kind = WATCHED_KINDS.get(label)
        if kind is not None:
            locality = _locality(labels[position + 1:])
            if locality is None:
                return None
            service = _service(labels[:position], kind)
            return WatchKey(kind, service, *locality) if service else None
    return _rfc2782_without_keyword(labels)


def _locality(labels: list[bytes]) -> tuple[str, str] | None:
    """(dc, peer) of the labels after the keyword; None for a form the agent rejects (or a
    namespace or partition, which are not watched)."""
    text = [label.decode("ascii", "replace") for label in labels]
    if not text:
        return "", ""
    if len(text) == 1:
        return text[0], ""
    if len(text) == 2 and text[1] in ("dc", "peer"):
        return (text[0], "") if text[1] == "dc" else ("", text[0])
    if len(text) == 4 and text[1] == "dc" and text[3] == "peer":
        return text[0], text[2]
    return None


def _service(labels: list[bytes], kind: str) -> str | None:
    """The service of the labels before the keyword: `<svc>`, `<tag>.<svc>` (a tag may hold
    dots), or `_<svc>._<tag|tcp>`."""
    if not labels:
        return None
    rfc2782 = _rfc2782_service(labels)
    if rfc2782 is not None:
        return rfc2782 or None
    if kind != "service" and len(labels) != 1:
        return None  # connect and ingress names take no tag
    return labels[-1].decode("ascii", "replace")


def _rfc2782_without_keyword(labels: list[bytes]) -> WatchKey | None:
    """`_<svc>._<tag|tcp>` straight under the domain (modern agents, SRV)."""
    service = _rfc2782_service(labels)
    return WatchKey("service", service) if service else None


def _rfc2782_service(labels: list[bytes]) -> str | None:
    """The `<svc>` of `_<svc>._<tag|tcp>` ("" for `_._<tag>`); None for another form."""
    if len(labels) == 2 and labels[0].startswith(b"_") and labels[1].startswith(b"_"):
        return labels[0][1:].decode("ascii", "replace")
    return None
