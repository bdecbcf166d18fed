"""FORWARD and STORE: ask a route's servers for a query, and cache what they answer.

The handler starts a fetch as the exchange of a cache key (serve/inflight.py); the fetch
asks the route's group (with the route's deadline; a reverse zone falls back to the default
upstreams), renders the answer once (dns/template.py) and stores it as the cache rules say
(serve/cache.classify). An answer that comes after the deadline is stored too, for the
client's retry.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from consuldns.dns import wire
from consuldns.dns.scrub import scrub_answer
from consuldns.dns.template import Template, render
from consuldns.errors import UpstreamError
from consuldns.serve.cache import Entry, Kind, State, classify
from consuldns.serve.router import Route
from consuldns.upstream.transport import Answer, Question


class Fetcher:
    """Fetches for one handler; reads its options, cache and clock live (a reload swaps
    the options and may swap the cache)."""

    def __init__(self, handler: Any):
        self.handler = handler

    async def fetch(self, query: wire.Query, route: Route) -> Template:
        """Ask the route's servers, store the answer as the cache rules say, return it."""
        question = Question(query.qname, query.qtype, query.qclass, query.do, query.cd)
        # Taken before the agent is asked: a change seen meanwhile forbids pinning.
        ticket = self.handler.watcher.ticket(query.qname) if route.is_agent else None
        got = await self._ask_route(question, route, partial(self._late, query, route))
        self.handler.stats.upstream_replies += 1
        self.handler.stats.observe_upstream(got.server, got.elapsed)
        return self.store(query, route, got, ticket)

    def store(self, query: wire.Query, route: Route, got: Answer, ticket=None) -> Template:
        """Render an upstream answer for query and cache it as the cache rules say (kept
        longer while a watch of the agent's HTTP API vouches for it: consul/watch.py)."""
        got.reply = scrub_answer(got.reply)  # only the question's name and its chain
        decision = classify(got.reply, route.policy)
        template = render(got.reply, query.qname, decision.ttls,
                          shuffle_addresses=self.handler.options.shuffle_addresses,
                          shuffle_srv=self.handler.options.shuffle_srv)
        if decision.kind in (Kind.POSITIVE, Kind.NEGATIVE):
            entry = Entry(template, decision.kind, self.handler.now(), decision.lifetime,
                          route.policy.stale_window, route.zone, route.policy.stale_ttl)
            if ticket is not None:
                self.handler.watcher.pin(ticket, query.key, entry,
                                         decision.kind is Kind.POSITIVE)
            self.handler.cache.put(query.key, entry)
        return template

    def _late(self, query: wire.Query, route: Route, got: Answer) -> None:
        """An answer that came after its server's share of the deadline: cached for the
        client's retry, unless a fresh answer is cached already."""
        now = self.handler.now()
        entry = self.handler.cache.get(query.key, now)
        if entry is None or entry.state(now) is not State.FRESH:
            self.handler.stats.late_answers += 1
            self.store(query, route, got)

    async def _ask_route(self, question: Question, route: Route, late) -> Answer:
        """Ask the route's group; a reverse zone falls back to the default upstreams."""
        deadline = self.handler.now() + route.timeout
        if route.fallback is None:
            return await route.group.resolve(question, deadline, late)
        try:
            got = await route.group.resolve(question, self.handler.now() + route.timeout / 2)
            if got.reply.rcode != wire.NXDOMAIN:
                return got
        except UpstreamError:
            pass
        return await route.fallback.resolve(question, deadline, late)


