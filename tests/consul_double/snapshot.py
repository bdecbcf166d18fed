"""An immutable view of catalog + config + profile, indexed for the query path.

A new Snapshot replaces the old one on every change, so the query path reads it
without locks, and its plan cache dies with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import Catalog, Node
from .config import LEGACY, MODERN, DoubleConfig, PreparedQuery
from .health import Instance
from .names import ARPA
from .records import parse_ip

CONSUL_SERVICE = "consul"


def reverse_name(address: str) -> str | None:
    """in-addr.arpa / ip6.arpa name of an IP (lowercase), None for hostnames."""
    ip = parse_ip(address)
    return None if ip is None else ip.reverse_pointer + "."


@dataclass
class Snapshot:
    """Catalog, config and profile plus the indexes the answer builders need."""

    catalog: Catalog
    config: DoubleConfig
    profile: str
    plans: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.profile not in (MODERN, LEGACY):
            raise ValueError(f"unknown profile {self.profile!r}")
        self.nodes = {(n.datacenter, n.name.lower()): n for n in self.catalog.nodes}
        node_dcs = {n.datacenter for n in self.catalog.nodes}
        self.datacenters = self.config.known_datacenters() | node_dcs
        self.instances = self._index_instances()
        self.gateways = self._index_gateways()
        self.zones = self._zones()

    @property
    def modern(self) -> bool:
        return self.profile == MODERN

    def _index_instances(self) -> dict[tuple[str, str], list[Instance]]:
        by_node = {n.name.lower(): n for n in self.catalog.nodes}
        index: dict[tuple[str, str], list[Instance]] = {}
        for service in self.catalog.services:
            node = by_node.get(service.node.lower())
            if node is not None:
                key = (node.datacenter, service.name.lower())
                index.setdefault(key, []).append(Instance(node, service))
        return index

    def _index_gateways(self) -> dict[tuple[str, str], list[Instance]]:
        """Ingress gateway instances by (dc, lowercased name of a service they expose)."""
        index: dict[tuple[str, str], list[Instance]] = {}
        for (dc, _), instances in self.instances.items():
            for instance in instances:
                for exposed in instance.service.ingress_for:
                    index.setdefault((dc, exposed.lower()), []).append(instance)
        return index

    def _zones(self) -> frozenset[str]:
        zones = {self.config.domain, ARPA}
        if self.modern and self.config.alt_domain:
            zones.add(self.config.alt_domain)
        return frozenset(zones)

    def datacenter(self, requested: str) -> str:
        return requested or self.config.datacenter

    def knows_datacenter(self, dc: str) -> bool:
        return dc in self.datacenters

    def service_instances(self, dc: str, name: str, tag: str) -> list[Instance]:
        """Instances of a service in a DC with the tag (case-insensitive), before health."""
        found = self.instances.get((dc, name.lower()), [])
        if not tag:
            return list(found)
        tag = tag.lower()
        return [i for i in found if any(t.lower() == tag for t in i.service.tags)]

    def ingress_instances(self, dc: str, name: str) -> list[Instance]:
        """Ingress gateways exposing a service, before health."""
        return list(self.gateways.get((dc, name.lower()), []))

    def node(self, dc: str, name: str) -> Node | None:
        return self.nodes.get((dc, name.lower()))

    def nodes_by_name(self, dc: str) -> list[Node]:
        """Nodes of one DC in Catalog.ListNodes order (by name)."""
        return sorted((n for n in self.catalog.nodes if n.datacenter == dc), key=lambda n: n.name)

    def instances_in(self, dc: str) -> list[Instance]:
        found = [i for (d, _), items in self.instances.items() if d == dc for i in items]
        return sorted(found, key=lambda i: (i.node.name, i.service.id))

    def prepared_query(self, name_or_id: str) -> PreparedQuery | None:
        """A prepared query by name or ID (lowercased), as PreparedQuery.Execute finds it."""
        for query in self.config.prepared_queries.values():
            if query.name.lower() == name_or_id or (query.id and query.id.lower() == name_or_id):
                return query
        return None

    def service_ttl(self, service: str) -> int:
        """Modern: exact name, then longest prefix*; 0.6.4: exact, then "*"; else 0."""
        ttls = self.config.service_ttl
        if service in ttls:
            return ttls[service]
        if not self.modern:
            return ttls.get("*", 0)
        prefixes = [k[:-1] for k in ttls if k.endswith("*") and service.startswith(k[:-1])]
        return ttls[max(prefixes, key=len) + "*"] if prefixes else 0

