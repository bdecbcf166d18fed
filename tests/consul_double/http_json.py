"""JSON bodies of the agent's HTTP API, shaped like Consul CE's structs.

CheckServiceNode = {Node, Service, Checks} (agent/structs/structs.go): node records
with the agent's default tagged addresses, NodeService with Kind/TaggedAddresses only
when set (omitempty), checks with node-level checks included and maintenance shown as
"critical". Lists are never null.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from .catalog import NODE_MAINT_CHECK, SERVICE_MAINT_PREFIX, Check, Node, Service
from .health import Instance
from .raft import Indexes, check_key, node_key, service_key
from .records import parse_ip

NODE_ID_NAMESPACE = uuid.UUID("6f0e6c1a-8d1e-4c38-9a55-5d1c0b6b3d7e")


def _raft(indexes: Indexes, key: tuple) -> dict[str, int]:
    created, modified = indexes.entity(key)
    return {"CreateIndex": created, "ModifyIndex": modified}


def _family_keys(address: str) -> tuple[str, ...]:
    ip = parse_ip(address)
    if ip is None:
        return ()
    return ("lan_ipv4", "wan_ipv4") if ip.version == 4 else ("lan_ipv6", "wan_ipv6")


def node_tagged_addresses(node: Node) -> dict[str, str]:
    """lan/wan plus the per-family keys the agent adds; ipv6 is the lan_ipv6 address."""
    tagged = {"lan": node.address, "wan": node.address}
    tagged.update({key: node.address for key in _family_keys(node.address)})
    if node.ipv6:
        tagged["lan_ipv6"] = node.ipv6
    return dict(sorted(tagged.items()))


def node_json(node: Node, indexes: Indexes) -> dict[str, Any]:
    return {
        "ID": str(uuid.uuid5(NODE_ID_NAMESPACE, node.name.lower())),
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": node_tagged_addresses(node),
        "Meta": dict(node.meta),
        **_raft(indexes, node_key(node.datacenter, node.name)),
    }


def service_tagged_addresses(service: Service) -> dict[str, dict[str, Any]]:
    """The agent tags an IP service address lan/wan per family; a VIP is consul-virtual."""
    tagged = {key: {"Address": service.address, "Port": service.port}
              for key in _family_keys(service.address)}
    if service.virtual_ip:
        tagged["consul-virtual"] = {"Address": service.virtual_ip, "Port": service.port}
    return dict(sorted(tagged.items()))


def service_json(service: Service, indexes: Indexes) -> dict[str, Any]:
    body: dict[str, Any] = {"Kind": service.kind} if service.kind else {}
    body.update({"ID": service.id, "Service": service.name, "Tags": list(service.tags),
                 "Address": service.address})
    tagged = service_tagged_addresses(service)
    if tagged:
        body["TaggedAddresses"] = tagged
    body["Meta"] = dict(service.meta)
    if service.port:
        body["Port"] = service.port
    body.update({
        "Weights": {"Passing": service.weights[0], "Warning": service.weights[1]},
        "EnableTagOverride": False,
        "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "Connect": {"Native": True} if service.connect else {},
        "PeerName": "",
        **_raft(indexes, service_key(service.node, service.id)),
    })
    return body


def check_name(check: Check, service: Service | None) -> str:
    """The names the agent gives its built-in checks; others are named by their ID."""
    if check.id == "serfHealth":
        return "Serf Health Status"
    if check.id == NODE_MAINT_CHECK:
        return "Node Maintenance Mode"
    if check.id.startswith(SERVICE_MAINT_PREFIX):
        return "Service Maintenance Mode"
    if service is not None and check.id == f"service:{service.id}":
        return f"Service '{service.name}' check"
    return check.id


def check_json(node: Node, check: Check, service: Service | None,
               indexes: Indexes) -> dict[str, Any]:
    return {
        "Node": node.name,
        "CheckID": check.id,
        "Name": check_name(check, service),
        "Status": "critical" if check.status == "maintenance" else check.status,
        "Notes": "",
        "Output": check.output,
        "ServiceID": service.id if service else "",
        "ServiceName": service.name if service else "",
        "ServiceTags": list(service.tags) if service else [],
        "Type": "",
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        **_raft(indexes, check_key(node.name, check.id)),
    }


def check_service_node(instance: Instance, indexes: Indexes) -> dict[str, Any]:
    """One entry of /v1/health/service: checks in CheckID order, node-level ones included."""
    node, service = instance.node, instance.service
    owned = [(c, None) for c in node.checks] + [(c, service) for c in service.checks]
    owned.sort(key=lambda pair: pair[0].id)
    return {"Node": node_json(node, indexes), "Service": service_json(service, indexes),
            "Checks": [check_json(node, c, owner, indexes) for c, owner in owned]}


def health_body(instances: Iterable[Instance], indexes: Indexes) -> list[dict[str, Any]]:
    """Entries in the state store's order: node name, then service ID."""
    ordered = sorted(instances, key=lambda i: (i.node.name.lower(), i.service.id))
    return [check_service_node(i, indexes) for i in ordered]


def catalog_services_body(services: Iterable[Service]) -> dict[str, list[str]]:
    """{"name": [tags...]}: every name once, tags merged and deduplicated."""
    tags: dict[str, set[str]] = {}
    for service in services:
        tags.setdefault(service.name, set()).update(service.tags)
    return {name: sorted(found) for name, found in sorted(tags.items())}
