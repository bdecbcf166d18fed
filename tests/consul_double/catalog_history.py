"""Past catalogs with the time each became current, so the DNS view can lag the HTTP view."""

from __future__ import annotations

import threading
import time
from collections import deque

from .catalog import Catalog

KEEP_SECONDS = 900.0  # longer than any lag a test sets
KEEP_ENTRIES = 10_000


class CatalogHistory:
    """Catalog generations, newest last; as_of(t) is the one that was current at t."""

    def __init__(self, catalog: Catalog) -> None:
        self._lock = threading.Lock()
        self._entries: deque[tuple[float, Catalog]] = deque([(time.monotonic(), catalog)])

    def record(self, catalog: Catalog) -> None:
        now = time.monotonic()
        with self._lock:
            self._entries.append((now, catalog))
            self._prune(now)

    def _prune(self, now: float) -> None:
        # Keep the newest entry older than the window: it was current at the window's start.
        entries = self._entries
        while len(entries) > 1 and (len(entries) > KEEP_ENTRIES
                                    or entries[1][0] <= now - KEEP_SECONDS):
            entries.popleft()

    def as_of(self, when: float) -> Catalog:
        """The catalog current at monotonic time `when` (the oldest kept if before it)."""
        with self._lock:
            found = self._entries[0][1]
            for started, catalog in self._entries:
                if started > when:
                    break
                found = catalog
            return found
