"""Catalog data: nodes, services and health checks, immutable, parsed from JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from .config import ConfigError

STATUSES = ("passing", "warning", "critical", "maintenance")
NODE_MAINT_CHECK = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"


@dataclass(frozen=True)
class Check:
    """One health check; service_id "" means a node-level check such as serfHealth."""

    id: str
    status: str
    service_id: str = ""
    output: str = ""


@dataclass(frozen=True)
class Node:
    """A catalog node. ipv6 plays the role of the lan_ipv6 tagged address (modern)."""

    name: str
    address: str
    datacenter: str
    ipv6: str = ""
    meta: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Service:
    """A service instance registered on a node."""

    id: str
    name: str
    node: str
    port: int = 0
    tags: tuple[str, ...] = ()
    address: str = ""
    weights: tuple[int, int] = (1, 1)  # (passing, warning)
    checks: tuple[Check, ...] = ()
    virtual_ip: str = ""
    connect: bool = False
    meta: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ingress_for: tuple[str, ...] = ()  # an ingress gateway for these services

    @property
    def kind(self) -> str:
        """Consul's ServiceKind: the double models typical services and ingress gateways."""
        return "ingress-gateway" if self.ingress_for else ""


@dataclass(frozen=True)
class Catalog:
    """Every node and service instance; change it only through the with_/without_ helpers."""

    nodes: tuple[Node, ...] = ()
    services: tuple[Service, ...] = ()

    def node(self, name: str) -> Node | None:
        lowered = name.lower()
        return next((n for n in self.nodes if n.name.lower() == lowered), None)


def _require(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ConfigError(f"{where}: missing '{key}'")
    return data[key]


def _check_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")


def parse_status(status: Any, where: str) -> str:
    if status not in STATUSES:
        raise ConfigError(f"{where}: status must be one of {STATUSES}, got {status!r}")
    return status


def _checks(items: Any, service_id: str, where: str) -> tuple[Check, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}.checks: expected a list")
    checks = []
    for i, item in enumerate(items):
        spot = f"{where}.checks[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{spot}: expected an object")
        _check_unknown(item, {"id", "status", "output"}, spot)
        check_id = str(item.get("id") or (f"service:{service_id}" if service_id else "serfHealth"))
        status = parse_status(item.get("status", "passing"), spot)
        checks.append(Check(check_id, status, service_id, str(item.get("output", ""))))
    return tuple(checks)


def node_from_dict(data: Mapping[str, Any], default_dc: str) -> Node:
    """A Node from its JSON form; every node carries consul-network-segment meta, as agents do."""
    where = f"node {data.get('name', '?')!r}"
    _check_unknown(data, {"name", "address", "ipv6", "datacenter", "meta", "checks"}, where)
    meta = _meta(data.get("meta", {}), where)
    return Node(
        name=str(_require(data, "name", where)),
        address=str(_require(data, "address", where)),
        datacenter=str(data.get("datacenter", default_dc)).lower(),
        ipv6=str(data.get("ipv6", "")),
        meta=MappingProxyType({"consul-network-segment": "", **meta}),
        checks=_checks(data.get("checks", []), "", where),
    )


def _meta(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}.meta: expected an object")
    return {str(k): str(v) for k, v in value.items()}


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list")
    return tuple(str(v) for v in value)


def _weights(value: Any, where: str) -> tuple[int, int]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}.weights: expected an object")
    return int(value.get("passing", 1)), int(value.get("warning", 1))


def service_from_dict(data: Mapping[str, Any]) -> Service:
    """A Service from its JSON form; id defaults to the name, as in the agent API."""
    where = f"service {data.get('id', data.get('name', '?'))!r}"
    allowed = {"id", "name", "node", "port", "tags", "address", "weights", "checks",
               "virtual_ip", "connect", "meta", "ingress_for"}
    _check_unknown(data, allowed, where)
    name = str(_require(data, "name", where))
    service_id = str(data.get("id") or name)
    return Service(
        id=service_id,
        name=name,
        node=str(_require(data, "node", where)),
        port=int(data.get("port", 0)),
        tags=_names(data.get("tags", []), f"{where}.tags"),
        address=str(data.get("address", "")),
        weights=_weights(data.get("weights", {}), where),
        checks=_checks(data.get("checks", []), service_id, where),
        virtual_ip=str(data.get("virtual_ip", "")),
        connect=bool(data.get("connect", False)),
        meta=MappingProxyType(_meta(data.get("meta", {}), where)),
        ingress_for=_names(data.get("ingress_for", []), f"{where}.ingress_for"),
    )


def catalog_from_dict(data: Mapping[str, Any], default_dc: str) -> Catalog:
    """A Catalog from {"nodes": [...], "services": [...]}; services need a known node."""
    catalog = Catalog()
    for item in data.get("nodes", []):
        catalog = with_node(catalog, node_from_dict(item, default_dc))
    for item in data.get("services", []):
        catalog = with_service(catalog, service_from_dict(item))
    return catalog


def _check_to_dict(check: Check) -> dict[str, str]:
    return {"id": check.id, "status": check.status, "output": check.output}


def node_to_dict(n: Node) -> dict[str, Any]:
    """The JSON form accepted by node_from_dict."""
    return {"name": n.name, "address": n.address, "ipv6": n.ipv6, "datacenter": n.datacenter,
            "meta": dict(n.meta), "checks": [_check_to_dict(c) for c in n.checks]}


def service_to_dict(s: Service) -> dict[str, Any]:
    """The JSON form accepted by service_from_dict."""
    return {"id": s.id, "name": s.name, "node": s.node, "port": s.port, "tags": list(s.tags),
            "address": s.address, "weights": {"passing": s.weights[0], "warning": s.weights[1]},
            "checks": [_check_to_dict(c) for c in s.checks], "virtual_ip": s.virtual_ip,
            "connect": s.connect, "meta": dict(s.meta), "ingress_for": list(s.ingress_for)}


def catalog_to_dict(catalog: Catalog) -> dict[str, Any]:
    """The JSON form accepted by catalog_from_dict."""
    return {"nodes": [node_to_dict(n) for n in catalog.nodes],
            "services": [service_to_dict(s) for s in catalog.services]}


def with_node(catalog: Catalog, node: Node) -> Catalog:
    """Register or replace a node (by name, case-insensitively, like Consul's index)."""
    others = tuple(n for n in catalog.nodes if n.name.lower() != node.name.lower())
    return replace(catalog, nodes=others + (node,))


def without_node(catalog: Catalog, name: str) -> Catalog:
    """Deregister a node and every service on it."""
    if catalog.node(name) is None:
        raise ConfigError(f"no node named {name!r}")
    lowered = name.lower()
    return Catalog(
        nodes=tuple(n for n in catalog.nodes if n.name.lower() != lowered),
        services=tuple(s for s in catalog.services if s.node.lower() != lowered),
    )


def _same_instance(service: Service, service_id: str, node: str | None) -> bool:
    return service.id == service_id and (node is None or service.node.lower() == node.lower())


def with_service(catalog: Catalog, service: Service) -> Catalog:
    """Register or replace a service instance (by node and id)."""
    if catalog.node(service.node) is None:
        raise ConfigError(f"service {service.id!r}: no node named {service.node!r}")
    others = tuple(s for s in catalog.services if not _same_instance(s, service.id, service.node))
    return replace(catalog, services=others + (service,))


def find_services(catalog: Catalog, service_id: str, node: str | None) -> list[Service]:
    found = [s for s in catalog.services if _same_instance(s, service_id, node)]
    if not found:
        raise ConfigError(f"no service with id {service_id!r}" + (f" on {node!r}" if node else ""))
    if len(found) > 1:
        raise ConfigError(f"service id {service_id!r} is on several nodes; name the node")
    return found


def without_service(catalog: Catalog, service_id: str, node: str | None = None) -> Catalog:
    """Deregister one service instance."""
    target = find_services(catalog, service_id, node)[0]
    return replace(catalog, services=tuple(s for s in catalog.services if s is not target))


def _set_in(checks: Iterable[Check], check: Check) -> tuple[Check, ...]:
    return tuple(c for c in checks if c.id != check.id) + (check,)


def find_node(catalog: Catalog, node: str) -> Node:
    found = catalog.node(node)
    if found is None:
        raise ConfigError(f"no node named {node!r}")
    return found


def find_check(catalog: Catalog, check_id: str, service_id: str | None,
               node: str | None) -> Check | None:
    """The current check (service check with service_id, else a node check), or None."""
    if service_id:
        owner_checks = find_services(catalog, service_id, node)[0].checks
    else:
        owner_checks = find_node(catalog, node or "").checks
    return next((c for c in owner_checks if c.id == check_id), None)


def with_node_check(catalog: Catalog, node: str, check_id: str, status: str,
                    output: str = "") -> Catalog:
    """Add or update a node-level check."""
    found = find_node(catalog, node)
    updated = replace(found, checks=_set_in(found.checks, Check(check_id, status, "", output)))
    return with_node(catalog, updated)


def with_service_check(catalog: Catalog, service_id: str, node: str | None, check_id: str,
                       status: str, output: str = "") -> Catalog:
    """Add or update a check that belongs to one service instance."""
    found = find_services(catalog, service_id, node)[0]
    check = Check(check_id, status, found.id, output)
    return with_service(catalog, replace(found, checks=_set_in(found.checks, check)))


def set_maintenance(catalog: Catalog, node: str, service_id: str | None, enable: bool) -> Catalog:
    """Maintenance mode as the agent does it: a critical check with a reserved ID."""
    if service_id is None:
        found = catalog.node(node)
        if found is None:
            raise ConfigError(f"no node named {node!r}")
        checks = tuple(c for c in found.checks if c.id != NODE_MAINT_CHECK)
        if enable:
            checks += (Check(NODE_MAINT_CHECK, "maintenance"),)
        return with_node(catalog, replace(found, checks=checks))
    service = find_services(catalog, service_id, node or None)[0]
    check_id = SERVICE_MAINT_PREFIX + service.id
    checks = tuple(c for c in service.checks if c.id != check_id)
    if enable:
        checks += (Check(check_id, "maintenance", service.id),)
    return with_service(catalog, replace(service, checks=checks))
