"""The agent's deferral of output-only check updates (agent/local/state.go UpdateCheck).

A status change syncs to the servers at once. An output change with the same status
waits check_update_interval/2 + U[0, check_update_interval); later output changes in
that window ride on the same timer, and a status change sends the latest output now.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

CheckRef = tuple[str, str, str]  # (service_id or "", node or "", check_id)


class OutputSync:
    """Pending outputs per check and their timers; write(ref, output) applies one."""

    def __init__(self, write: Callable[[CheckRef, str], None],
                 rng: random.Random | None = None) -> None:
        self._write = write
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._pending: dict[CheckRef, tuple[str, threading.Timer]] = {}

    def pending(self, ref: CheckRef) -> str | None:
        with self._lock:
            entry = self._pending.get(ref)
        return None if entry is None else entry[0]

    def defer(self, ref: CheckRef, output: str, interval: float) -> None:
        """Hold output back; the first deferral of a check starts its timer."""
        with self._lock:
            entry = self._pending.get(ref)
            if entry is None:
                delay = interval / 2 + self._rng.uniform(0, interval)
                timer = threading.Timer(delay, self._fire, args=(ref,))
                timer.daemon = True
                timer.start()
            else:
                timer = entry[1]
            self._pending[ref] = (output, timer)

    def cancel(self, ref: CheckRef) -> None:
        with self._lock:
            entry = self._pending.pop(ref, None)
        if entry is not None:
            entry[1].cancel()

    def cancel_all(self) -> None:
        with self._lock:
            entries, self._pending = list(self._pending.values()), {}
        for _, timer in entries:
            timer.cancel()

    def _fire(self, ref: CheckRef) -> None:
        with self._lock:
            entry = self._pending.pop(ref, None)
        if entry is not None:
            self._write(ref, entry[0])
