"""Catalogs for the Consul double; each function returns a fresh dict tests may mutate."""

from __future__ import annotations

DATACENTER = "dc1"  # the double's default datacenter
WEB_PORT = 8080
WEB_HEALTHY = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
WEB_CRITICAL = "127.0.0.9"
DB_ADDRESS = "127.0.0.9"
DB_PORT = 5432
NODES = {
    "node1": "127.0.0.2",
    "node2": "127.0.0.3",
    "node3": "127.0.0.4",
    "node4": "127.0.0.5",
    "node5": "127.0.0.9",
}


def _node(name: str, address: str) -> dict:
    return {"name": name, "address": address, "meta": {"rack": name[-1]}, "checks": []}


def _service(
    name: str, node: str, port: int, status: str = "passing", tags: tuple[str, ...] = ()
) -> dict:
    return {
        "id": f"{name}-{node}",
        "name": name,
        "node": node,
        "address": "",  # empty: Consul answers with the node address
        "port": port,
        "tags": list(tags),
        "checks": [{"id": f"service:{name}-{node}", "status": status}],
    }


def default_catalog() -> dict:
    """web: 4 passing instances on node1..node4 (127.0.0.2-5) and 1 critical on node5
    (127.0.0.9); db: 1 passing instance on node5."""
    web = [_service("web", node, WEB_PORT, tags=("http",)) for node in ("node1", "node2",
                                                                        "node3", "node4")]
    web.append(_service("web", "node5", WEB_PORT, status="critical", tags=("http",)))
    return {
        "nodes": [_node(name, address) for name, address in NODES.items()],
        "services": [*web, _service("db", "node5", DB_PORT, tags=("primary",))],
    }
