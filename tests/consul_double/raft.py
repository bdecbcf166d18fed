"""Raft indexes as a Consul server's state store keeps them, derived from catalog changes.

Every change that alters something is one raft write with the next index. Entities
(nodes, service instances, checks) carry CreateIndex/ModifyIndex; views carry the index
of the last write that changed them: a service's view covers its instances, their
checks, and their nodes' records and node-level checks (agent/consul/state/catalog.go
ensureCheckTxn, updateAllServiceIndexesOfNode), so a node check wakes every service on
the node. The "services" view per DC (/v1/catalog/services) covers service records
only, not health. When a service name loses its last instance, the DC's extinction
index moves (catalogUpdateServiceExtinctionIndex): a missing service reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .snapshot import Snapshot

Key = tuple
Items = dict[Key, Any]


@dataclass(frozen=True)
class Indexes:
    """One immutable generation of indexes; a new object replaces it on every write."""

    raft: int = 0
    entities: Mapping[Key, tuple[int, int]] = field(default_factory=dict)
    views: Mapping[Key, int] = field(default_factory=dict)
    extinction: Mapping[str, int] = field(default_factory=dict)
    epoch: int = 0  # bumped by a snapshot restore: held queries return at once

    def entity(self, key: Key) -> tuple[int, int]:
        """(CreateIndex, ModifyIndex) of a node, service or check entity."""
        return self.entities.get(key, (0, 0))

    def view(self, kind: str, dc: str, name: str, exists: bool) -> int:
        """X-Consul-Index for a health view (kind service|connect|ingress); never 0."""
        last = self.views.get(("view", kind, dc, name.lower()), 0)
        if not exists and kind != "ingress":
            last = max(last, self.extinction.get(dc, 0))  # maxIndexForService
        return max(last, 1)

    def services(self, dc: str) -> int:
        """X-Consul-Index of /v1/catalog/services for a DC; never 0."""
        return max(self.views.get(("services", dc), 0), 1)


def node_key(dc: str, node: str) -> Key:
    return ("node", dc, node.lower())


def service_key(node: str, service_id: str) -> Key:
    return ("service", node.lower(), service_id)


def check_key(node: str, check_id: str) -> Key:
    return ("check", node.lower(), check_id)


def _entities(snap: Snapshot) -> Items:
    items: Items = {}
    for node in snap.catalog.nodes:
        items[node_key(node.datacenter, node.name)] = replace(node, checks=())
        items.update({check_key(node.name, c.id): c for c in node.checks})
    for service in snap.catalog.services:
        items[service_key(service.node, service.id)] = replace(service, checks=())
        items.update({check_key(service.node, c.id): c for c in service.checks})
    return items


def _sorted(instances: list) -> tuple:
    return tuple(sorted(instances, key=lambda i: (i.node.name.lower(), i.service.id)))


def _views(snap: Snapshot) -> Items:
    items: Items = {}
    records: dict[str, list] = {}
    for (dc, name), instances in snap.instances.items():
        items[("view", "service", dc, name)] = _sorted(instances)
        connect = [i for i in instances if i.service.connect]
        if connect:
            items[("view", "connect", dc, name)] = _sorted(connect)
        records.setdefault(dc, []).extend(replace(i.service, checks=()) for i in instances)
    for (dc, name), gateways in snap.gateways.items():
        items[("view", "ingress", dc, name)] = _sorted(gateways)
    for dc, services in records.items():
        items[("services", dc)] = tuple(sorted(services, key=lambda s: (s.node.lower(), s.id)))
    return items


def catalog_items(snap: Snapshot) -> tuple[Items, Items]:
    """(entities, views) of a snapshot, compared between generations to find writes."""
    return _entities(snap), _views(snap)


def _changed(old: Items, new: Items) -> list[Key]:
    return [k for k in old.keys() | new.keys() if old.get(k) != new.get(k)]


def _advance_entities(indexes: Indexes, new: Items, changed: list[Key], raft: int) -> dict:
    entities = dict(indexes.entities)
    for key in changed:
        if key not in new:
            entities.pop(key, None)
        else:
            created = entities.get(key, (raft, raft))[0]
            entities[key] = (created, raft)
    return entities


def _extinct_dcs(old_views: Items, new_views: Items) -> set[str]:
    return {k[2] for k in old_views.keys() - new_views.keys() if k[:2] == ("view", "service")}


def advance(indexes: Indexes, old: tuple[Items, Items], new: tuple[Items, Items]) -> Indexes:
    """The indexes after the write that turned catalog items old into new (if any changed)."""
    changed_entities = _changed(old[0], new[0])
    changed_views = _changed(old[1], new[1])
    if not changed_entities and not changed_views:
        return indexes
    raft = indexes.raft + 1
    views = dict(indexes.views)
    views.update({key: raft for key in changed_views})
    extinction = dict(indexes.extinction)
    extinction.update({dc: raft for dc in _extinct_dcs(old[1], new[1])})
    entities = _advance_entities(indexes, new[0], changed_entities, raft)
    return Indexes(raft, entities, views, extinction, indexes.epoch)


def restore(indexes: Indexes, to: int) -> Indexes:
    """A snapshot restore taken at raft index `to`: no index stays above it."""
    return Indexes(
        raft=min(indexes.raft, to),
        entities={k: (min(c, to), min(m, to)) for k, (c, m) in indexes.entities.items()},
        views={k: min(v, to) for k, v in indexes.views.items()},
        extinction={k: min(v, to) for k, v in indexes.extinction.items()},
        epoch=indexes.epoch + 1,
    )
