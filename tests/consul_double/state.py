"""Live state shared by the DNS loop, the HTTP loop and the control API.

The control thread builds a new Snapshot and swaps the reference; the DNS loop reads
whatever reference is current, so Consul's "live data on every query" holds and the
query path takes no lock except for counting. Each catalog change is also a raft write
(raft.py): the HTTP view pairs the snapshot with its indexes, and listeners (the HTTP
server) are told after every change so held blocking queries can re-check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dnslib import QTYPE

from . import catalog as cat
from .catalog_history import CatalogHistory
from .check_sync import CheckRef, OutputSync
from .config import ConfigError, DoubleConfig, config_from_dict, config_to_dict, update_config
from .faults import Faults, faults_to_dict, with_fault
from .http_config import HttpConfig, http_config_to_dict, update_http_config
from .http_stats import HttpStats
from .raft import Indexes, advance, catalog_items, restore
from .snapshot import Snapshot
from .wire import Query, read_name


@dataclass(frozen=True)
class HttpView:
    """What the HTTP API reads: a snapshot and the raft indexes of the same generation."""

    snapshot: Snapshot
    indexes: Indexes


def type_name(qtype: int) -> str:
    return QTYPE.get(qtype, f"TYPE{qtype}")


def question_key(question: bytes) -> tuple[str, str]:
    """(lowercased name with trailing dot, type name) of a question in wire form."""
    labels, offset = read_name(question, 0)
    qtype = int.from_bytes(question[offset:offset + 2], "big")
    return (".".join(labels).lower() + "."), type_name(qtype)


class DoubleState:
    """Catalog + config + profile (as a Snapshot), indexes, faults, HTTP config, counters."""

    def __init__(self, catalog: cat.Catalog, config: DoubleConfig, profile: str,
                 http_config: HttpConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.snapshot = Snapshot(catalog, config, profile)
        self.faults = Faults()
        self.http_config = http_config or HttpConfig()
        self.http_stats = HttpStats()
        self._counts: dict[tuple[bytes, str], int] = {}
        self._total = 0
        self._items = catalog_items(self.snapshot)
        self.indexes = advance(Indexes(), ({}, {}), self._items)
        self.http_view = HttpView(self.snapshot, self.indexes)
        self.frozen_http_view: HttpView | None = None  # the view when servers were lost
        self.no_leader_since = 0.0
        self._history = CatalogHistory(catalog)
        self._lagged: Snapshot | None = None
        self._listeners: list[Callable[[], None]] = []
        self._output_sync = OutputSync(self._write_deferred_output)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], profile: str) -> DoubleState:
        """From a catalog file's JSON: {"config": {...}, "http": {...}, "nodes", "services"}."""
        config = config_from_dict(data.get("config"))
        http_config = update_http_config(HttpConfig(), data.get("http") or {})
        return cls(cat.catalog_from_dict(data, config.datacenter), config, profile, http_config)

    @property
    def profile(self) -> str:
        return self.snapshot.profile

    # -- change notification --

    def add_listener(self, listener: Callable[[], None]) -> None:
        """listener() runs after every change, outside the lock, in the changing thread."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @contextmanager
    def _change(self) -> Iterator[None]:
        with self._lock:
            yield
        for listener in list(self._listeners):
            listener()

    def close(self) -> None:
        """Stop pending deferred check writes."""
        self._output_sync.cancel_all()

    # -- what DNS reads --

    def dns_snapshot(self) -> Snapshot:
        """The snapshot DNS answers from: the current one, or the one of dns_lag seconds ago."""
        lag = self.faults.dns_lag
        current = self.snapshot
        if lag <= 0:
            return current
        catalog = self._history.as_of(time.monotonic() - lag)
        if catalog is current.catalog:
            return current
        lagged = self._lagged
        if lagged is None or lagged.catalog is not catalog or lagged.config is not current.config:
            lagged = self._lagged = Snapshot(catalog, current.config, current.profile)
        return lagged

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
        """Reset DNS query counters and HTTP counters."""
        with self._count_lock:
            self._counts.clear()
            self._total = 0
        self.http_stats.reset()

    # -- catalog and config (called from the control thread) --

    def _swap(self, catalog: cat.Catalog | None = None, config: DoubleConfig | None = None) -> None:
        """Install a new snapshot (call under the lock); a changed catalog is a raft write."""
        current = self.snapshot
        snap = Snapshot(catalog or current.catalog, config or current.config, current.profile)
        if snap.catalog is not current.catalog:
            items = catalog_items(snap)
            self.indexes = advance(self.indexes, self._items, items)
            self._items = items
            self._history.record(snap.catalog)
        self.snapshot = snap
        self.http_view = HttpView(snap, self.indexes)

    def catalog_dict(self) -> dict[str, Any]:
        snap = self.snapshot
        return {"profile": snap.profile, "config": config_to_dict(snap.config),
                **cat.catalog_to_dict(snap.catalog)}

    def set_catalog(self, data: Mapping[str, Any]) -> None:
        """Replace nodes and services (and the config / http config, when given)."""
        with self._change():
            config = self.snapshot.config
            if "config" in data:
                config = config_from_dict(data["config"])
            if "http" in data:
                self.http_config = update_http_config(HttpConfig(), data["http"] or {})
            self._swap(cat.catalog_from_dict(data, config.datacenter), config)

    def register_node(self, node: Mapping[str, Any]) -> None:
        with self._change():
            parsed = cat.node_from_dict(node, self.snapshot.config.datacenter)
            self._swap(cat.with_node(self.snapshot.catalog, parsed))

    def deregister_node(self, name: str) -> None:
        with self._change():
            self._swap(cat.without_node(self.snapshot.catalog, name))

    def register_service(self, service: Mapping[str, Any]) -> None:
        with self._change():
            self._swap(cat.with_service(self.snapshot.catalog, cat.service_from_dict(service)))

    def deregister_service(self, service_id: str, node: str | None = None) -> None:
        with self._change():
            self._swap(cat.without_service(self.snapshot.catalog, service_id, node))

    def update_node(self, name: str, fields: Mapping[str, Any]) -> None:
        """Re-register a node with some fields changed (address, ipv6, meta, checks)."""
        if "name" in fields:
            raise ConfigError("update_node: the name cannot change")
        with self._change():
            found = cat.find_node(self.snapshot.catalog, name)
            data = {**cat.node_to_dict(found), **fields}
            parsed = cat.node_from_dict(data, self.snapshot.config.datacenter)
            self._swap(cat.with_node(self.snapshot.catalog, parsed))

    def update_service(self, service_id: str, node: str | None,
                       fields: Mapping[str, Any]) -> None:
        """Re-register a service instance with some fields changed (tags, port, meta...)."""
        if "id" in fields or "node" in fields:
            raise ConfigError("update_service: id and node cannot change")
        with self._change():
            found = cat.find_services(self.snapshot.catalog, service_id, node)[0]
            parsed = cat.service_from_dict({**cat.service_to_dict(found), **fields})
            self._swap(cat.with_service(self.snapshot.catalog, parsed))

    def set_check(self, status: str, check_id: str | None = None, service_id: str | None = None,
                  node: str | None = None, output: str | None = None) -> None:
        """Set a service check (service_id) or a node-level check (node, default serfHealth).

        output None keeps the check's output. Like the agent, an output-only change is
        deferred when http check_update_interval > 0; a status change syncs at once.
        """
        status = cat.parse_status(status, "set_check")
        if not service_id and not node:
            raise ConfigError("set_check: give service_id or node")
        check_id = check_id or (f"service:{service_id}" if service_id else "serfHealth")
        ref: CheckRef = (service_id or "", node or "", check_id)
        with self._change():
            current = cat.find_check(self.snapshot.catalog, check_id, service_id, node)
            pending = self._output_sync.pending(ref)
            local_output = pending if pending is not None else (current.output if current else "")
            output = local_output if output is None else output
            if current is not None and current.status == status:
                if output == local_output:
                    return
                interval = self.http_config.check_update_interval
                if interval > 0:
                    self._output_sync.defer(ref, output, interval)
                    return
            self._output_sync.cancel(ref)
            self._write_check(ref, status, output)

    def _write_check(self, ref: CheckRef, status: str, output: str) -> None:
        service_id, node, check_id = ref
        current = self.snapshot.catalog
        if service_id:
            updated = cat.with_service_check(current, service_id, node or None, check_id, status,
                                             output)
        else:
            updated = cat.with_node_check(current, node, check_id, status, output)
        self._swap(updated)

    def _write_deferred_output(self, ref: CheckRef, output: str) -> None:
        """The deferral timer fired: sync the latest output with the current status."""
        service_id, node, check_id = ref
        with self._change():
            try:
                current = cat.find_check(self.snapshot.catalog, check_id, service_id or None,
                                         node or None)
            except ConfigError:
                return  # deregistered meanwhile
            if current is not None:
                self._write_check(ref, current.status, output)

    def set_maintenance(self, enable: bool = True, node: str | None = None,
                        service_id: str | None = None) -> None:
        with self._change():
            current = self.snapshot.catalog
            if service_id is None and not node:
                raise ConfigError("set_maintenance: give node or service_id")
            self._swap(cat.set_maintenance(current, node or "", service_id, enable))

    def set_config(self, changes: Mapping[str, Any]) -> None:
        with self._change():
            self._swap(config=update_config(self.snapshot.config, changes))

    def set_http_config(self, changes: Mapping[str, Any]) -> None:
        with self._change():
            self.http_config = update_http_config(self.http_config, changes)

    def http_config_dict(self) -> dict[str, Any]:
        return http_config_to_dict(self.http_config)

    def restore_snapshot(self, index: int = 1) -> None:
        """A raft snapshot restore: every index drops to at most `index`, held queries return."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 1:
            raise ConfigError(f"restore_snapshot: index must be an integer >= 1, got {index!r}")
        with self._change():
            self.indexes = restore(self.indexes, index)
            self.http_view = HttpView(self.snapshot, self.indexes)

    # -- faults --

    def set_fault(self, kind: str, delay: float = 0.0) -> None:
        """Add one fault; faults accumulate until clear_faults()."""
        with self._change():
            before = self.faults
            self.faults = with_fault(before, kind, delay)
            if kind == "servfail" and before.servfail is None:
                self.frozen_http_view = self.http_view
            if kind == "no_leader" and before.no_leader is None:
                self.no_leader_since = time.monotonic()

    def clear_faults(self) -> None:
        with self._change():
            self.faults = Faults()
            self.frozen_http_view = None

    def faults_dict(self) -> dict[str, Any]:
        return faults_to_dict(self.faults)
