"""What DNS can show of a service's instances, read from `/v1/health/<kind>/<svc>`.

A blocking query returns on every write to the service, and check outputs change often
(every output change of a check bumps the index, deferred by the agent but never dropped):
the digest keeps only what the agent's DNS answers can show, so a wakeup that changed none
of it invalidates nothing. Health is reduced to the classes DNS filters by: critical (never
in answers), warning (dropped by only_passing, weighted differently in SRV) and passing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

OUTPUT_SHOWN = 200  # bytes of a check's output shown by `consuldns query --explain`


def health_class(checks: list[dict[str, Any]]) -> str:
    """critical if any check is critical, warning if any other is not passing, else passing."""
    statuses = {check.get("Status", "") for check in checks}
    if "critical" in statuses:
        return "critical"
    return "warning" if statuses - {"passing"} else "passing"


def _instance(entry: dict[str, Any]) -> tuple:
    node, service = entry.get("Node") or {}, entry.get("Service") or {}
    return (
        node.get("Node", ""), node.get("Address", ""),
        _sorted_items(node.get("TaggedAddresses")), _sorted_items(node.get("Meta")),
        service.get("ID", ""), service.get("Address", ""),
        _sorted_items(service.get("TaggedAddresses")), service.get("Port", 0),
        tuple(sorted(service.get("Tags") or ())), _sorted_items(service.get("Weights")),
        health_class(entry.get("Checks") or []),
    )


def _sorted_items(mapping: Any) -> str:
    return json.dumps(mapping or {}, sort_keys=True)


def digest(entries: list[dict[str, Any]]) -> str:
    """A digest of every DNS-visible field of every instance, order-independent."""
    instances = sorted(repr(_instance(entry)) for entry in entries)
    return hashlib.sha256("\n".join(instances).encode()).hexdigest()


def summary(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per instance: where it is, its health class, and the checks that are not passing
    with the start of their output (why an address is missing from DNS answers)."""
    out = []
    for entry in entries:
        node, service = entry.get("Node") or {}, entry.get("Service") or {}
        checks = entry.get("Checks") or []
        out.append({
            "node": node.get("Node", ""),
            "address": service.get("Address") or node.get("Address", ""),
            "port": service.get("Port", 0),
            "health": health_class(checks),
            "failing": [{"check": check.get("Name") or check.get("CheckID", ""),
                         "status": check.get("Status", ""),
                         "output": (check.get("Output") or "")[:OUTPUT_SHOWN]}
                        for check in checks if check.get("Status") != "passing"],
        })
    return sorted(out, key=lambda instance: (instance["health"] != "passing",
                                             instance["node"], instance["address"]))
