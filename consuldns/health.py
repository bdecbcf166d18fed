"""Upstream health: probe servers marked down until they answer; is the agent answering?

upstream.Group marks a server down after `max_fails` failures in a row and then tries it
last. Here a background loop asks each down server a small question every
`upstream.health_interval` seconds (CoreDNS forward's health check) and puts it back in
rotation as soon as it answers. Readiness (/ready) asks the agent directly, on demand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from consuldns import wire
from consuldns.errors import MalformedPacket, UpstreamError
from consuldns.router import Router
from consuldns.upstream import Group, Question, Server, new_query_id

log = logging.getLogger("consuldns.health")

ROOT_NS = Question(b"\x00", wire.NS)  # what CoreDNS asks: any resolver can answer it
READY_TIMEOUT = 1.0


def groups_of(router: Router) -> list[tuple[Group, bool, str]]:
    """Every distinct group of a router: (group, is the agent, zone it serves first)."""
    seen: dict[int, tuple[Group, bool, str]] = {}
    for route in router.routes:
        for group in (route.group, route.fallback):
            if group is not None and id(group) not in seen:
                is_agent = route.is_agent and group is route.group
                seen[id(group)] = (group, is_agent, route.zone)
    return list(seen.values())


async def probe(server: Server, question: Question, timeout: float) -> str | None:
    """Ask server one question; None when it gave a usable reply, else why not."""
    qid = new_query_id()
    message = wire.build_query(qid, question.qname, question.qtype, question.qclass,
                               edns_size=1232)
    try:
        raw = await server.exchange_udp(message, qid, question, timeout)
        rcode = wire.parse_reply(raw).rcode
    except (UpstreamError, MalformedPacket, OSError) as exc:
        return str(exc) or type(exc).__name__
    # REFUSED is an answer from a live server (it may serve only its own zone); SERVFAIL
    # from a probe means it cannot resolve anything, so it stays down.
    return "answered SERVFAIL" if rcode == wire.SERVFAIL else None


class HealthChecker:
    """The background loop that probes down servers of the current router."""

    def __init__(self, router_of: Callable[[], Router], interval: float):
        self.router_of = router_of
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
            for server, question in self._down_servers():
                if server not in self._probing:
                    self._spawn(server, question)

    def _down_servers(self) -> Iterator[tuple[Server, Question]]:
        for group, is_agent, zone in groups_of(self.router_of()):
            question = Question(wire.text_to_name(zone), wire.SOA) if is_agent else ROOT_NS
            for server in group.servers:
                if server.down_since is not None:
                    yield server, question

    def _spawn(self, server: Server, question: Question) -> None:
        self._probing.add(server)
        task = asyncio.get_running_loop().create_task(self._probe(server, question))
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe(self, server: Server, question: Question) -> None:
        try:
            problem = await probe(server, question, max(self.interval, 0.5))
        finally:
            self._probing.discard(server)
        if problem is None and server.down_since is not None:
            server.failures = 0
            server.down_since = None
            log.warning("upstream %s answers health probes again: back in rotation",
                        server.address)


async def agent_ready(router: Router, domain: str,
                      timeout: float = READY_TIMEOUT) -> tuple[bool, str]:
    """Readiness: does the Consul agent answer (any reply counts, even an error rcode)?"""
    route = router.route(wire.text_to_name(domain))
    question = Question(wire.text_to_name(route.zone), wire.SOA)
    problems = []
    for server in route.group.servers:
        problem = await _any_reply(server, question, timeout)
        if problem is None:
            return True, f"agent {server.address} answers"
        problems.append(f"agent {server.address}: {problem}")
    return False, "; ".join(problems) or "no agent configured"


async def _any_reply(server: Server, question: Question, timeout: float) -> str | None:
    qid = new_query_id()
    message = wire.build_query(qid, question.qname, question.qtype, question.qclass,
                               edns_size=1232)
    try:
        await server.exchange_udp(message, qid, question, timeout)
    except (UpstreamError, OSError) as exc:
        return str(exc) or type(exc).__name__
    return None
