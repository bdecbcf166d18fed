"""DoubleControl: the Python client of the double's HTTP control endpoint."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any


class DoubleControlError(RuntimeError):
    """The double refused a control request (bad input) or could not be reached."""


def _fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."


@dataclass(frozen=True)
class Counters:
    """Queries the double received: total, and per (name lowercased + ".", type, transport)."""

    total: int
    by_key: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def count(self, name: str, qtype: str | None = None, transport: str | None = None) -> int:
        """Queries for name (any case, dot optional), optionally of one type / transport."""
        wanted = _fqdn(name)
        return sum(c for (n, t, tr), c in self.by_key.items()
                   if n == wanted and qtype in (None, t) and transport in (None, tr))


@dataclass(frozen=True)
class HttpCounters:
    """The HTTP API's counters since the last reset_counters().

    requests: {(endpoint, path, status): count}, endpoint one of health_service,
    health_connect, health_ingress, catalog_services, status_leader, agent_self,
    not_found. held: blocking queries waiting now, per path. connections: open now per
    client IP ("unix" for the unix socket). max_connections: the most open at once per
    client; max_connections_total: across clients. rejected: 429s per client IP.
    """

    requests: dict[tuple[str, str, int], int]
    held: dict[str, int]
    connections: dict[str, int]
    max_connections: dict[str, int]
    max_connections_total: int
    rejected: dict[str, int]

    def count(self, endpoint: str | None = None, path: str | None = None,
              status: int | None = None) -> int:
        """Requests answered, optionally for one endpoint / path / status."""
        return sum(c for (e, p, s), c in self.requests.items()
                   if endpoint in (None, e) and path in (None, p) and status in (None, s))

    @property
    def held_total(self) -> int:
        return sum(self.held.values())


class DoubleControl:
    """Mutate the catalog, health, config and faults of a running double; read counters."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DoubleControlError(f"control {method} {path}: {exc}") from exc
        finally:
            conn.close()
        if response.status != 200:
            raise DoubleControlError(f"control {method} {path}: {payload.get('error', payload)}")
        return payload

    def _call(self, operation: str, **args: Any) -> None:
        self._request("POST", "/" + operation, args)

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def catalog(self) -> dict[str, Any]:
        """The whole state as JSON: profile, config, nodes, services."""
        return self._request("GET", "/catalog")

    def set_catalog(self, catalog: dict[str, Any]) -> None:
        """Replace all nodes and services (and the config if catalog has "config")."""
        self._call("set_catalog", catalog=catalog)

    def register_node(self, name: str, address: str, **fields: Any) -> None:
        """fields: datacenter, ipv6, meta, checks=[{"id", "status"}]. Replaces a same-named node."""
        self._call("register_node", node={"name": name, "address": address, **fields})

    def deregister_node(self, name: str) -> None:
        """Remove the node and every service on it."""
        self._call("deregister_node", name=name)

    def register_service(self, name: str, node: str, **fields: Any) -> None:
        """fields: id, port, tags, address, weights={"passing","warning"}, checks, virtual_ip."""
        self._call("register_service", service={"name": name, "node": node, **fields})

    def deregister_service(self, service_id: str, node: str | None = None) -> None:
        self._call("deregister_service", service_id=service_id, node=node)

    def update_node(self, name: str, /, **fields: Any) -> None:
        """Re-register a node with some fields changed: address, ipv6, meta, checks."""
        self._call("update_node", name=name, fields=fields)

    def update_service(self, service_id: str, /, node: str | None = None, **fields: Any) -> None:
        """Re-register an instance with some fields changed: tags, port, address, weights,
        meta, connect, virtual_ip, ingress_for, name, checks."""
        self._call("update_service", service_id=service_id, node=node, fields=fields)

    def set_check(self, status: str, *, check_id: str | None = None,
                  service_id: str | None = None, node: str | None = None,
                  output: str | None = None) -> None:
        """passing|warning|critical|maintenance for a service check or a node check.

        With service_id the check defaults to "service:<id>"; with only node it is the
        node-level "serfHealth", whose failure drops every service on the node. output
        None keeps the check's output; an output-only change is held back like the
        agent does when the http config check_update_interval is above 0.
        """
        self._call("set_check", status=status, check_id=check_id, service_id=service_id,
                   node=node, output=output)

    def set_maintenance(self, *, node: str | None = None, service_id: str | None = None,
                        enable: bool = True) -> None:
        """Node or service maintenance, registered as Consul does (a critical check)."""
        self._call("set_maintenance", node=node, service_id=service_id, enable=enable)

    def set_config(self, **changes: Any) -> None:
        """Change dns_config keys at runtime, e.g. only_passing=True, node_ttl="10s"."""
        self._call("set_config", changes=changes)

    def set_http_config(self, **changes: Any) -> None:
        """Change agent HTTP settings at runtime: max_conns_per_client, check_update_interval,
        default_query_time, max_query_time, use_streaming_backend, leader, node_name,
        acl_tokens ({secret: [service prefix, ...]} or None), acl_default_token."""
        self._call("set_http_config", changes=changes)

    def http_config(self) -> dict[str, Any]:
        return self._request("GET", "/http_config")

    def restore_snapshot(self, index: int = 1) -> None:
        """A raft snapshot restore: every index drops to at most `index`; held queries
        return at once with the lower index, later writes count on from it."""
        self._call("restore_snapshot", index=index)

    def set_fault(self, kind: str, delay: float = 0.0) -> None:
        """Faults add up until clear_faults(): latency (delay per DNS query), drop,
        close_tcp (DNS only); servfail (lost servers: DNS SERVFAIL and HTTP 500 after
        delay); no_leader (HTTP 500 after delay unless ?stale, leader ""); http_down
        (HTTP listener closed, connections dropped); dns_lag (DNS answers from the catalog
        as it was `delay` seconds ago)."""
        self._call("set_fault", kind=kind, delay=delay)

    def clear_faults(self) -> None:
        self._call("clear_faults")

    def faults(self) -> dict[str, Any]:
        return self._request("GET", "/faults")

    def counters(self) -> Counters:
        raw = self._request("GET", "/counters")
        by_key = {(r["name"], r["type"], r["transport"]): r["count"] for r in raw["queries"]}
        return Counters(raw["total"], by_key)

    def count(self, name: str, qtype: str | None = None, transport: str | None = None) -> int:
        """Shorthand for counters().count(...)."""
        return self.counters().count(name, qtype, transport)

    def http_counters(self) -> HttpCounters:
        raw = self._request("GET", "/http_counters")
        requests = {(r["endpoint"], r["path"], r["status"]): r["count"] for r in raw["requests"]}
        return HttpCounters(requests, raw["held"], raw["connections"], raw["max_connections"],
                            raw["max_connections_total"], raw["rejected"])

    def reset_counters(self) -> None:
        """Zero the DNS and HTTP counters (connection maxima restart from those open now)."""
        self._call("reset_counters")
