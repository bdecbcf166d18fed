"""Coalescing: concurrent identical misses share one upstream exchange.

An exchange is one upstream fetch for one cache key. Every query that needs it, over UDP or
TCP, and every background refresh, joins it as a waiter: a callback that gets the outcome
(the rendered Template, or the exception) when the fetch ends. One way in (`join`, else
`start`), one way out (every waiter's callback, in the order they joined).

Only exchanges take the slots that protect the upstreams (`len(exchanges)`); waiters do not,
but one exchange takes at most MAX_WAITERS of them, and exchanges are counted per owner (the
client network that started them) so that one client cannot hold them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from consuldns.dns.template import Template

log = logging.getLogger("consuldns.inflight")

Outcome = Template | BaseException  # CancelledError when the exchange was cancelled
Waiter = Callable[[Outcome], None]

# Queries that may wait on one exchange. A retry storm on one slow name is a few hundred
# copies a second: beyond this they are turned away, not queued without bound.
MAX_WAITERS = 500
JOINED, FULL, ABSENT = "joined", "full", "absent"  # what join() did


class Exchange:
    """One upstream fetch under way and the callbacks waiting for its outcome."""

    __slots__ = ("key", "owner", "task", "waiters")

    def __init__(self, key: bytes, waiter: Waiter, owner: object):
        self.key = key
        self.owner = owner
        self.waiters: list[Waiter] = [waiter]
        self.task: asyncio.Task[Template] | None = None


class Exchanges:
    """The exchanges under way in one process, by cache key."""

    def __init__(self) -> None:
        self._by_key: dict[bytes, Exchange] = {}
        self._by_owner: dict[object, int] = {}
        self.waiting = 0  # waiters of every exchange under way

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: bytes) -> bool:
        return key in self._by_key

    def held_by(self, owner: object) -> int:
        """Exchanges under way that `owner` started."""
        return self._by_owner.get(owner, 0)

    def join(self, key: bytes, waiter: Waiter) -> str:
        """Wait for the exchange under way for key: JOINED, FULL (it has MAX_WAITERS
        already) or ABSENT (there is none)."""
        exchange = self._by_key.get(key)
        if exchange is None:
            return ABSENT
        if len(exchange.waiters) >= MAX_WAITERS:
            return FULL
        exchange.waiters.append(waiter)
        self.waiting += 1
        return JOINED

    def start(self, key: bytes, fetch: Coroutine[Any, Any, Template], waiter: Waiter,
              owner: object = None) -> None:
        """Run fetch as the exchange for key (none may be under way); waiter gets its
        outcome. `owner` (None: nobody) is counted by held_by while it runs."""
        exchange = self._by_key[key] = Exchange(key, waiter, owner)
        self.waiting += 1
        if owner is not None:
            self._by_owner[owner] = self._by_owner.get(owner, 0) + 1
        exchange.task = asyncio.get_running_loop().create_task(fetch)
        exchange.task.add_done_callback(lambda task: self._finish(exchange, task))

    def _finish(self, exchange: Exchange, task: asyncio.Task[Template]) -> None:
        if self._by_key.get(exchange.key) is exchange:
            del self._by_key[exchange.key]
        if exchange.owner is not None:
            held = self._by_owner[exchange.owner] - 1
            if held:
                self._by_owner[exchange.owner] = held
            else:
                del self._by_owner[exchange.owner]
        outcome: Outcome
        if task.cancelled():
            outcome = asyncio.CancelledError()
        else:
            outcome = task.exception() or task.result()
        self.waiting -= len(exchange.waiters)
        for waiter in exchange.waiters:
            try:
                waiter(outcome)
            except Exception:  # one waiter's bug must not cost the others their answers
                log.exception("internal error delivering an upstream answer")

    async def drain(self, timeout: float) -> None:
        """Wait (at most timeout) for the exchanges under way, then cancel what is left."""
        tasks = [e.task for e in self._by_key.values() if e.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
