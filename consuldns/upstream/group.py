"""A group of servers that answer the same names: order, deadline shares and failover.

One deadline covers the whole client query; each server of the group gets an equal share of
what remains. A server that times out or answers SERVFAIL, REFUSED, FORMERR or NOTIMP is
failed over; after `max_fails` failures in a row it is marked down, tried last, and probed
by upstream/health.py until it answers again.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from consuldns.dns import wire
from consuldns.errors import OutOfSockets, UpstreamError, UpstreamTimeout
from consuldns.upstream.transport import Answer, Question, Server, Transport

log = logging.getLogger("consuldns.upstream")

FAILOVER_RCODES = frozenset({wire.SERVFAIL, wire.REFUSED, wire.FORMERR, wire.NOTIMP})


class Group:
    """Servers that answer the same names, with a selection policy and failover."""

    def __init__(self, name: str, servers: list[Server], transport: Transport | None = None, *,
                 policy: str = "sequential", max_fails: int = 3, now=time.monotonic):
        self.name = name
        self.servers = servers
        self.transport = transport or Transport()
        self.policy = policy
        self.max_fails = max_fails
        self.now = now
        self._next = 0

    def signature(self) -> tuple:
        """What decides the answers this group gives: who is asked, and how."""
        return tuple(s.address for s in self.servers), self.policy, self.transport

    def order(self) -> list[Server]:
        """Servers in the order to try: by policy, with servers marked down last. The
        group's own list when policy and health leave it as it is: not to be changed."""
        servers = self.servers
        if self.policy == "random" and len(servers) > 1:
            servers = sorted(servers, key=lambda _: secrets.randbits(16))
        elif self.policy == "round_robin" and len(servers) > 1:
            self._next = (self._next + 1) % len(servers)
            servers = servers[self._next:] + servers[:self._next]
        if any(server.down_since is not None for server in servers):
            servers = sorted(servers, key=lambda s: s.down_since is not None)
        return servers

    async def resolve(self, question: Question, deadline: float,
                      late: Callable[[Answer], None] | None = None) -> Answer:
        """Ask the servers in turn until one answers usefully; raise UpstreamError if none does.
        `late` gets a usable answer a server gives after its share of the deadline."""
        servers = self.order()
        usable_late = self._usable_only(late)
        last_error: UpstreamError = UpstreamError("no upstream servers configured")
        for index, server in enumerate(servers):
            remaining = deadline - self.now()
            if remaining <= 0:
                break
            share = remaining / (len(servers) - index)
            try:
                answer = await self.transport.ask(server, question, share, self.now,
                                                  usable_late)
            except OutOfSockets:
                raise  # this process is out of descriptors: no server is to blame
            except UpstreamError as exc:
                self._failed(server)
                last_error = exc
                continue
            if not self._usable(answer.reply):
                self._failed(server)
                last_error = UpstreamError(
                    f"{server.address} answered rcode {answer.reply.rcode}", answer.reply.rcode)
                continue
            self.succeeded(server)
            return answer
        if self.now() >= deadline and last_error.rcode is None:
            raise UpstreamTimeout(f"{self.name}: no answer before the deadline ({last_error})")
        raise last_error

    @staticmethod
    def _usable(reply: wire.Reply) -> bool:
        """An answer the group gives its client, not one it fails over from."""
        return reply.rcode not in FAILOVER_RCODES

    def _usable_only(self, late: Callable[[Answer], None] | None
                     ) -> Callable[[Answer], None] | None:
        """A late answer counts when it is one the group would have used."""
        if late is None:
            return None

        def usable(answer: Answer) -> None:
            if self._usable(answer.reply):
                late(answer)

        return usable

    def succeeded(self, server: Server, news: str = "is answering again") -> None:
        """server answered: its failures are forgotten and, if it was down, it is back in
        rotation (said with `news`)."""
        if server.down_since is not None:
            log.warning("upstream %s %s", server.address, news)
        server.failures = 0
        server.down_since = None

    def _failed(self, server: Server) -> None:
        server.errors += 1
        server.failures += 1
        if server.failures >= self.max_fails and server.down_since is None:
            server.down_since = self.now()
            log.warning("upstream %s marked down after %d failures", server.address,
                        server.failures)
