"""Live state shared by the DNS loop and the control API: snapshot, faults, counters.

The control thread builds a new Snapshot and swaps the reference; the DNS loop reads
whatever reference is current, so Consul's "live data on every query" holds and the
query path takes no lock except for counting.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dnslib import QTYPE

from . import catalog as cat
from .config import ConfigError, DoubleConfig, config_from_dict, config_to_dict, update_config
from .snapshot import Snapshot
from .wire import Query, read_name

FAULT_KINDS = ("latency", "drop", "servfail", "close_tcp")


@dataclass(frozen=True)
class Faults:
    """Active fault injection; servfail is None when servers are reachable."""

    latency: float = 0.0
    drop: bool = False
    servfail: float | None = None
    close_tcp: bool = False


def type_name(qtype: int) -> str:
    return QTYPE.get(qtype, f"TYPE{qtype}")


def question_key(question: bytes) -> tuple[str, str]:
    """(lowercased name with trailing dot, type name) of a question in wire form."""
    labels, offset = read_name(question, 0)
    qtype = int.from_bytes(question[offset:offset + 2], "big")
    return (".".join(labels).lower() + "."), type_name(qtype)


class DoubleState:
    """Catalog + config + profile (as a Snapshot), faults and query counters."""

    def __init__(self, catalog: cat.Catalog, config: DoubleConfig, profile: str) -> None:
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.snapshot = Snapshot(catalog, config, profile)
        self.faults = Faults()
        self._counts: dict[tuple[bytes, str], int] = {}
        self._total = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], profile: str) -> DoubleState:
        """From a catalog file's JSON: {"config": {...}, "nodes": [...], "services": [...]}."""
        config = config_from_dict(data.get("config"))
        return cls(cat.catalog_from_dict(data, config.datacenter), config, profile)

    @property
    def profile(self) -> str:
        return self.snapshot.profile

    # -- counters (called on the DNS loop) --

    def count(self, query: Query | None, transport: str) -> None:
        # Keyed by raw question bytes: names are decoded only when counters are read.
        key = (query.question if query is not None else b"", transport)
        with self._count_lock:
            self._total += 1
            self._counts[key] = self._counts.get(key, 0) + 1

    def counters(self) -> dict[str, Any]:
        with self._count_lock:
            raw, total = dict(self._counts), self._total
        merged: dict[tuple[str, str, str], int] = {}
        for (question, transport), count in raw.items():
            if question:
                key = (*question_key(question), transport)
                merged[key] = merged.get(key, 0) + count
        rows = [{"name": n, "type": t, "transport": tr, "count": c}
                for (n, t, tr), c in sorted(merged.items())]
        return {"total": total, "queries": rows}

    def reset_counters(self) -> None:
        with self._count_lock:
            self._counts.clear()
            self._total = 0

    # -- catalog and config (called from the control thread) --

    def _swap(self, catalog: cat.Catalog | None = None, config: DoubleConfig | None = None) -> None:
        current = self.snapshot
        self.snapshot = Snapshot(catalog or current.catalog, config or current.config,
                                 current.profile)

    def catalog_dict(self) -> dict[str, Any]:
        snap = self.snapshot
        return {"profile": snap.profile, "config": config_to_dict(snap.config),
                **cat.catalog_to_dict(snap.catalog)}

    def set_catalog(self, data: Mapping[str, Any]) -> None:
        """Replace nodes and services (and the config, when given)."""
        with self._lock:
            config = self.snapshot.config
            if "config" in data:
                config = config_from_dict(data["config"])
            self._swap(cat.catalog_from_dict(data, config.datacenter), config)

    def register_node(self, node: Mapping[str, Any]) -> None:
        with self._lock:
            parsed = cat.node_from_dict(node, self.snapshot.config.datacenter)
            self._swap(cat.with_node(self.snapshot.catalog, parsed))

    def deregister_node(self, name: str) -> None:
        with self._lock:
            self._swap(cat.without_node(self.snapshot.catalog, name))

    def register_service(self, service: Mapping[str, Any]) -> None:
        with self._lock:
            self._swap(cat.with_service(self.snapshot.catalog, cat.service_from_dict(service)))

    def deregister_service(self, service_id: str, node: str | None = None) -> None:
        with self._lock:
            self._swap(cat.without_service(self.snapshot.catalog, service_id, node))

    def set_check(self, status: str, check_id: str | None = None, service_id: str | None = None,
                  node: str | None = None) -> None:
        """Set a service check (service_id) or a node-level check (node, default serfHealth)."""
        status = cat.parse_status(status, "set_check")
        with self._lock:
            current = self.snapshot.catalog
            if service_id:
                check = check_id or f"service:{service_id}"
                updated = cat.with_service_check(current, service_id, node, check, status)
            elif node:
                updated = cat.with_node_check(current, node, check_id or "serfHealth", status)
            else:
                raise ConfigError("set_check: give service_id or node")
            self._swap(updated)

    def set_maintenance(self, enable: bool = True, node: str | None = None,
                        service_id: str | None = None) -> None:
        with self._lock:
            current = self.snapshot.catalog
            if service_id is None and not node:
                raise ConfigError("set_maintenance: give node or service_id")
            self._swap(cat.set_maintenance(current, node or "", service_id, enable))

    def set_config(self, changes: Mapping[str, Any]) -> None:
        with self._lock:
            self._swap(config=update_config(self.snapshot.config, changes))

    # -- faults --

    def set_fault(self, kind: str, delay: float = 0.0) -> None:
        """Add one fault; faults accumulate until clear_faults()."""
        if kind not in FAULT_KINDS:
            raise ConfigError(f"fault kind must be one of {FAULT_KINDS}, got {kind!r}")
        if delay < 0:
            raise ConfigError("fault delay must be >= 0")
        with self._lock:
            faults = self.faults
            if kind == "latency":
                faults = Faults(delay, faults.drop, faults.servfail, faults.close_tcp)
            elif kind == "drop":
                faults = Faults(faults.latency, True, faults.servfail, faults.close_tcp)
            elif kind == "servfail":
                faults = Faults(faults.latency, faults.drop, delay, faults.close_tcp)
            else:
                faults = Faults(faults.latency, faults.drop, faults.servfail, True)
            self.faults = faults

    def clear_faults(self) -> None:
        with self._lock:
            self.faults = Faults()

    def faults_dict(self) -> dict[str, Any]:
        f = self.faults
        return {"latency": f.latency, "drop": f.drop, "servfail": f.servfail,
                "close_tcp": f.close_tcp}
