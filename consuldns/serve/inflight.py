"""Coalescing: concurrent identical misses share one upstream exchange.

An exchange is one upstream fetch for one cache key. Every query that needs it, over UDP or
TCP, and every background refresh, joins it as a waiter: a callback that gets the outcome
(the rendered Template, or the exception) when the fetch ends. One way in (`join`, else
`start`), one way out (every waiter's callback, in the order they joined).
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


class Exchange:
    """One upstream fetch under way and the callbacks waiting for its outcome."""

    __slots__ = ("key", "task", "waiters")

    def __init__(self, key: bytes, waiter: Waiter):
        self.key = key
        self.waiters: list[Waiter] = [waiter]
        self.task: asyncio.Task[Template] | None = None


class Exchanges:
    """The exchanges under way in one process, by cache key."""

    def __init__(self) -> None:
        self._by_key: dict[bytes, Exchange] = {}
        self.waiting = 0  # waiters of every exchange under way

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: bytes) -> bool:
        return key in self._by_key

    def join(self, key: bytes, waiter: Waiter) -> bool:
        """Wait for the exchange under way for key; False when there is none."""
        exchange = self._by_key.get(key)
        if exchange is None:
            return False
        exchange.waiters.append(waiter)
        self.waiting += 1
        return True

    def start(self, key: bytes, fetch: Coroutine[Any, Any, Template], waiter: Waiter) -> None:
        """Run fetch as the exchange for key (none may be under way); waiter gets its outcome."""
        exchange = self._by_key[key] = Exchange(key, waiter)
        self.waiting += 1
        exchange.task = asyncio.get_running_loop().create_task(fetch)
        exchange.task.add_done_callback(lambda task: self._finish(exchange, task))

    def _finish(self, exchange: Exchange, task: asyncio.Task[Template]) -> None:
        if self._by_key.get(exchange.key) is exchange:
            del self._by_key[exchange.key]
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
