"""The catalog the double's own tests query; base() returns a fresh dict."""

from __future__ import annotations

BIG_COUNT = 20


def _node(name: str, address: str, **extra) -> dict:
    return {"name": name, "address": address, **extra}


def _svc(service_id: str, name: str, node: str, port: int, **extra) -> dict:
    return {"id": service_id, "name": name, "node": node, "port": port, **extra}


def base() -> dict:
    """Nodes and services covering every query form; see the comments for what each is for."""
    nodes = [
        _node("node1", "10.0.0.1", meta={"rack": "r1", "rfc1035-raw": "plain", "a=b": "c`d"}),
        _node("node2", "10.0.0.2"),
        _node("node3", "10.0.0.3", ipv6="fd00::3"),  # lan_ipv6 tagged address (modern)
        _node("v6node", "2001:db8::5"),
        _node("foo.bar", "10.0.0.9"),  # a dotted node name
        _node("remote1", "10.1.0.1", datacenter="dc2"),
        *[_node(f"server{i}", f"10.0.1.{i}") for i in range(1, 5)],  # four Consul servers
        *[_node(f"big{i}", f"10.2.0.{i + 1}") for i in range(BIG_COUNT)],
        _node("sick", "10.3.0.1", checks=[{"id": "serfHealth", "status": "critical"}]),
        _node("extnode", "db.example.test"),  # a hostname address: CNAME answers
    ]
    services = [
        _svc("web-1", "web", "node1", 8080, tags=["v1", "a.b"]),
        _svc("web-2", "web", "node2", 8080, tags=["v2"]),
        _svc("web-3", "web", "node3", 8081, tags=["v1"], address="192.0.2.10"),
        # Same address twice (two ports on node1): one A record, two SRV records.
        _svc("dup-1", "dup", "node1", 9001),
        _svc("dup-2", "dup", "node1", 9002),
        _svc("v6svc", "v6svc", "v6node", 7000),
        _svc("api-1", "api", "remote1", 9000),
        _svc("db-1", "db", "sick", 5432),  # its node's serfHealth is critical
        *[_svc(f"consul-{i}", "consul", f"server{i}", 8300) for i in range(1, 5)],
        *[_svc(f"big-{i}", "big", f"big{i}", 10000 + i) for i in range(BIG_COUNT)],
        _svc("h-pass", "health", "node1", 1, checks=[{"status": "passing"}]),
        _svc("h-warn", "health", "node2", 2, checks=[{"status": "warning"}]),
        _svc("h-crit", "health", "node3", 3, checks=[{"status": "critical"}]),
        _svc("h-maint", "health", "foo.bar", 4, checks=[{"status": "maintenance"}]),
        _svc("h-sick", "health", "sick", 5),
        _svc("w-pass", "weighted", "node1", 1, weights={"passing": 10, "warning": 3},
             checks=[{"status": "passing"}]),
        _svc("w-warn", "weighted", "node2", 2, weights={"passing": 10, "warning": 3},
             checks=[{"status": "warning"}]),
        _svc("ext-1", "ext", "extnode", 5000),
        _svc("mixed-1", "mixed", "node1", 1),
        _svc("mixed-2", "mixed", "node2", 2, address="alias.example.test"),
        _svc("inzone-1", "inzone", "node2", 3, address="node1.node.consul"),
    ]
    config = {
        "datacenters": ["dc3"],  # a known datacenter without nodes
        "prepared_queries": {
            "web-q": {"service": "web", "ttl": "7s"},
            "v1-q": {"service": "web", "tags": ["v1"]},
        },
    }
    return {"config": config, "nodes": nodes, "services": services}


def mesh() -> dict:
    """base() plus a Connect-native instance of web and an ingress gateway exposing web."""
    catalog = base()
    catalog["services"] += [
        _svc("web-native", "web", "node2", 8443, connect=True, meta={"version": "2"}),
        _svc("gw-1", "gateway", "node3", 21000, ingress_for=["web"],
             checks=[{"id": "gw-alive", "status": "passing", "output": "ok"}]),
    ]
    return catalog
