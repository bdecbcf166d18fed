"""HTTP counters: requests per endpoint, held blocking queries, connections per client."""

from __future__ import annotations

import threading
from typing import Any


class HttpStats:
    """Written by the HTTP loop, read and reset from the control thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._held: dict[str, int] = {}
        self._open: dict[str, int] = {}
        self._max_open: dict[str, int] = {}
        self._max_total = 0
        self._rejected: dict[str, int] = {}

    def admit(self, client: str, limit: int) -> bool:
        """Count a new connection, or refuse it when the client already has `limit` (0: none)."""
        with self._lock:
            current = self._open.get(client, 0)
            if limit and current >= limit:
                self._rejected[client] = self._rejected.get(client, 0) + 1
                return False
            self._open[client] = current + 1
            self._max_open[client] = max(self._max_open.get(client, 0), current + 1)
            self._max_total = max(self._max_total, sum(self._open.values()))
            return True

    def closed(self, client: str) -> None:
        with self._lock:
            left = self._open.get(client, 0) - 1
            if left > 0:
                self._open[client] = left
            else:
                self._open.pop(client, None)

    def hold(self, path: str, delta: int) -> None:
        """A blocking query on path starts (+1) or ends (-1) waiting."""
        with self._lock:
            count = self._held.get(path, 0) + delta
            if count:
                self._held[path] = count
            else:
                self._held.pop(path, None)

    def count(self, endpoint: str, path: str, status: int) -> None:
        key = (endpoint, path, status)
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            rows = [{"endpoint": e, "path": p, "status": s, "count": c}
                    for (e, p, s), c in sorted(self._requests.items())]
            return {"requests": rows, "held": dict(self._held), "connections": dict(self._open),
                    "max_connections": dict(self._max_open),
                    "max_connections_total": self._max_total, "rejected": dict(self._rejected)}

    def reset(self) -> None:
        """Forget requests and rejections; maxima restart from the connections open now."""
        with self._lock:
            self._requests.clear()
            self._rejected.clear()
            self._max_open = dict(self._open)
            self._max_total = sum(self._open.values())
