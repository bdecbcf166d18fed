"""Upstream health: probe servers marked down until they answer again.

upstream.Group marks a server down after `max_fails` failures in a row and then tries it
last. Here a background loop asks each down server its transport's probe question every
`upstream.health_interval` seconds (CoreDNS forward's health check) and puts it back in
rotation as soon as it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from consuldns.dns import wire
from consuldns.errors import UpstreamError
from consuldns.upstream.group import Group
from consuldns.upstream.transport import Question, Server, ask_once

GroupsOf = Callable[[], Iterable[tuple[Group, str]]]  # (group, the zone it serves first)


async def probe(server: Server, question: Question, timeout: float) -> str | None:
    """Ask server one question; None when it gave a usable reply, else why not."""
    try:
        rcode = await ask_once(server, question, timeout)
    except UpstreamError as exc:
        return str(exc) or type(exc).__name__
    # REFUSED is an answer from a live server (it may serve only its own zone); SERVFAIL
    # from a probe means it cannot resolve anything, so it stays down.
    return "answered SERVFAIL" if rcode == wire.SERVFAIL else None


class HealthChecker:
    """The background loop that probes the down servers of the current groups."""

    def __init__(self, groups_of: GroupsOf, interval: float):
        self.groups_of = groups_of
        self.interval = interval
        self._probing: set[Server] = set()
        self._task: asyncio.Task | None = None
        self._probes: set[asyncio.Task] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        for task in (self._task, *self._probes):
            if task is not None:
                task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.probe_down_servers()

    def probe_down_servers(self) -> None:
        """Start a probe for every down server not being probed already."""
        for group, zone in self.groups_of():
            for server in group.servers:
                if server.down_since is not None and server not in self._probing:
                    self._spawn(group, server, group.transport.probe_question(zone))

    def _spawn(self, group: Group, server: Server, question: Question) -> None:
        self._probing.add(server)
        task = asyncio.get_running_loop().create_task(self._probe(group, server, question))
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe(self, group: Group, server: Server, question: Question) -> None:
        try:
            problem = await probe(server, question, max(self.interval, 0.5))
        finally:
            self._probing.discard(server)
        if problem is None and server.down_since is not None:
            group.succeeded(server, "answers health probes again: back in rotation")
