"""The query path of one process: the fast path and the slow path.

`answer_now` is the synchronous fast path (bad input, policy answers and fresh cache hits):
it returns the reply bytes, b"" to drop the packet, or the parsed Query when the answer needs
an upstream exchange. `resolve` answers such a query through a callback: it joins the
exchange under way for the same question or starts one (serve/inflight.py), and turns the
outcome into a reply: the answer, a stale answer when every server failed (RFC 8767), or
SERVFAIL. Upstream failures and overload become rcodes here; unreadable packets become
FORMERR, NOTIMP or nothing in dns/wire.py and dns/synth.py.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from consuldns.dns import shape, synth, wire
from consuldns.dns.template import Template, empty_template
from consuldns.errors import FormatError, MalformedPacket, UpstreamError
from consuldns.serve.cache import Cache, Entry, Kind, State
from consuldns.serve.fetch import Fetcher
from consuldns.serve.inflight import ABSENT, FULL, Exchanges, Outcome
from consuldns.serve.router import Route, Router
from consuldns.serve.stats import Stats

log = logging.getLogger("consuldns.handler")

PARSED_MEMO_SIZE = 4096  # distinct query byte strings remembered (cleared when full)
MEMO_REPLY_LIMIT = 1500  # larger replies are shaped at each hit: the memo stays under 6 MiB
Deliver = Callable[[bytes], None]  # sends one reply; b"" means there is none to send

# Cache states written to the query log.
MISS, COALESCED, STALE = "miss", "coalesced", "stale"


@dataclass(frozen=True)
class Options:
    """Everything the handler reads from the configuration; ops/build.py makes it from the
    settings at start-up and again on every reload, which swaps it whole."""

    router: Router
    max_udp: int = 1232
    max_inflight: int = 1000
    shuffle_addresses: bool = True
    shuffle_srv: bool = True
    prefetch: bool = False
    chaos: bool = False
    query_log: Any = None  # ops.querylog.QueryLog, or None when the query log is off


class _NoWatch:
    """No watch of the agent's HTTP API: every answer keeps its own lifetime."""

    def ticket(self, qname: bytes) -> None:
        return None

    def agent_lost(self, zone: str) -> bool:
        return False


NO_WATCH = _NoWatch()


class Known:
    """A query that passed parsing and policy, and the last reply built for it: while the
    entry, its age in whole seconds and the transport are the same, the reply is too (when
    there is nothing to shuffle), but for the ID."""

    __slots__ = ("age", "entry", "query", "reply", "tcp")

    def __init__(self, query: wire.Query):
        self.query = query
        self.entry: Entry | None = None
        self.age = -1
        self.tcp = False
        self.reply = b""

    def remember(self, entry: Entry, age: int, tcp: bool, reply: bytes) -> None:
        self.entry, self.age, self.tcp, self.reply = entry, age, tcp, reply


class Handler:
    """Answers queries; shared by every listener of one process."""

    def __init__(self, cache: Cache, options: Options, *, stats: Stats | None = None,
                 rng: random.Random | None = None, now: Callable[[], float] = time.monotonic):
        self.cache = cache
        self.options = options
        self.stats = stats or Stats()
        self.rng = rng or random.Random()
        self.now = now
        self.exchanges = Exchanges()
        self.fetcher = Fetcher(self)
        self.watcher: Any = NO_WATCH  # consul/watch.Watcher when the agent is watched
        # Queries that passed parsing and policy, by their bytes after the ID: clients repeat
        # the same bytes with a new ID, and a hit then skips parse_query (~2 us of ~4).
        self._parsed: dict[bytes, Known] = {}
        # The replies made for the waiters of the last exchange that ended, by shape.
        self._shared: tuple[Template | None, dict[tuple, shape.Replies]] = (None, {})

    # ------------------------------------------------------------ fast path

    def answer_now(self, data: bytes, tcp: bool) -> bytes | wire.Query:
        """Reply bytes, b"" to drop, or the Query when an upstream must be asked."""
        known = self._parsed.get(data[2:])
        if known is not None:
            # Same bytes as a query that passed parsing and policy: only the ID differs.
            result = self._from_cache(known.query, tcp, known)
            if result.__class__ is bytes:
                return data[:2] + result[2:]  # the reply to the earlier query, with this ID
            return known.query.with_id(wire.U16.unpack_from(data)[0])
        try:
            query = wire.parse_query(data)
        except MalformedPacket:
            self.stats.dropped += 1
            return b""
        except FormatError as exc:
            self.stats.malformed += 1
            return wire.error_reply(data, None, exc.rcode, max_udp=self.options.max_udp)
        special = synth.policy_answer(data, query, self.options.max_udp, self.options.chaos)
        if special is not None:
            if special[3] & 0x0F == wire.REFUSED:
                self.stats.refused += 1
            return special
        parsed = self._parsed
        if len(parsed) >= PARSED_MEMO_SIZE:
            parsed.clear()
        parsed[data[2:]] = Known(query)
        return self._from_cache(query, tcp)

    def _from_cache(self, query: wire.Query, tcp: bool,
                    known: Known | None = None) -> bytes | wire.Query:
        """A fresh (or, while upstream fails, stale) cached reply; else the query to resolve."""
        now = self.now()
        entry = self.cache.get(query.key, now)
        if entry is None:
            return query
        if now < entry.expires:
            self.stats.zone_hits[entry.zone] += 1
            entry.hits += 1
            if self.options.prefetch and entry.expires - now < entry.prefetch_margin:
                self._refresh_in_background(query, entry)
            return self._fresh_reply(entry, now, query, tcp, known)
        if ((now < entry.failed_until or self.watcher.agent_lost(entry.zone))
                and entry.state(now) is State.STALE):
            # Upstream failed moments ago (or the agent can only fail): answer stale at once
            # and keep trying behind it (RFC 8767 §5, the failure recheck timer) instead of
            # making every client wait.
            self._refresh_in_background(query, entry)
            return self._stale(entry, query, tcp)
        return query

    def _fresh_reply(self, entry: Entry, now: float, query: wire.Query, tcp: bool,
                     known: Known | None) -> bytes:
        """The reply from a fresh entry; reused from `known` while nothing in it can change
        (same entry, same age in seconds, same transport, nothing to shuffle)."""
        if known is None or entry.template.runs:
            return self._shape(entry.template, entry.body_at(now), query, tcp)
        age = int(now - entry.stored)
        if known.entry is not entry or known.age != age or known.tcp is not tcp:
            reply = self._shape(entry.template, entry.body_at(now), query, tcp)
            if len(reply) > MEMO_REPLY_LIMIT:
                return reply
            known.remember(entry, age, tcp, reply)
        elif known.reply[2] & 0x02:
            self.stats.truncated += 1
        return known.reply

    def refused(self, data: bytes) -> bytes:
        """REFUSED for a client outside the allowed networks; b"" for an unreadable packet."""
        self.stats.refused += 1
        return synth.refused(data, self.options.max_udp)

    def servfail(self, data: bytes, query: wire.Query) -> bytes:
        return wire.error_reply(data, query, wire.SERVFAIL, max_udp=self.options.max_udp)

    def _shape(self, template: Template, body: bytes, query: wire.Query, tcp: bool) -> bytes:
        max_udp = self.options.max_udp
        limit = shape.TCP_LIMIT if tcp else shape.udp_limit(query, max_udp)
        reply = shape.build(template, body, query, limit, max_udp=max_udp, rng=self.rng)
        if reply[2] & 0x02:
            self.stats.truncated += 1
        return reply

    # ------------------------------------------------------------ slow path

    def resolve(self, data: bytes, query: wire.Query, tcp: bool, client: Any,
                deliver: Deliver) -> None:
        """Answer a query that needs upstream through deliver(reply): when the exchange it
        joins or starts ends, or at once when it may do neither (docs/design.md, "Bad and
        hostile input": stale if there is a stale answer, else SERVFAIL or nothing)."""
        route = self.options.router.route(query.qname)
        self.stats.zone_misses[route.zone] += 1
        waiter = partial(self._deliver, data, query, tcp, client, deliver, route, self.now())
        joined = self.exchanges.join(query.key, partial(waiter, COALESCED))
        if joined is ABSENT:
            self._start(data, query, tcp, client, deliver, route, partial(waiter, MISS))
        elif joined is FULL:
            self.stats.coalesced_dropped += 1
            deliver(self._turned_away(query, tcp, b""))
        else:
            self.stats.coalesced += 1

    def _start(self, data: bytes, query: wire.Query, tcp: bool, client: Any,
               deliver: Deliver, route: Route, waiter: Callable[[Outcome], None]) -> None:
        """Start the exchange for query, unless the exchanges are full or its client holds
        more than its share of them."""
        owner = client_network(client)
        if not self._may_start(owner):
            self.stats.overload += 1
            deliver(self._turned_away(query, tcp, self.servfail(data, query)))
            return
        self.exchanges.start(query.key, self.fetcher.fetch(query, route), waiter, owner)

    def _may_start(self, owner: object) -> bool:
        cap = self.options.max_inflight
        if len(self.exchanges) >= cap:
            return False
        # A quarter of the exchanges stays free for other clients: one client (or one /24,
        # one /56) flooding misses cannot starve everyone else.
        return owner is None or self.exchanges.held_by(owner) < cap - cap // 4

    def _turned_away(self, query: wire.Query, tcp: bool, otherwise: bytes) -> bytes:
        """A stale answer when the cache has one to serve, else `otherwise`."""
        now = self.now()
        entry = self.cache.get(query.key, now)
        if entry is not None and entry.state(now) is State.STALE:
            return self._stale(entry, query, tcp)
        return otherwise

    def _deliver(self, data: bytes, query: wire.Query, tcp: bool, client: Any,
                 deliver: Deliver, route: Route, started: float, state: str,
                 outcome: Outcome) -> None:
        """A waiter of an exchange: shape this query's reply from the outcome and send it."""
        if outcome.__class__ is Template:  # the common case first: one call fewer per waiter
            reply = self._shared_reply(outcome, data, query, tcp)
        else:
            reply, state = self._failure_reply(outcome, data, query, route, tcp, state)
        query_log = self.options.query_log
        if query_log is not None and reply:
            query_log.resolved(client, query, route.zone, state, reply, self.now() - started,
                               tcp)
        deliver(reply)

    def _failure_reply(self, outcome: BaseException, data: bytes, query: wire.Query,
                       route: Route, tcp: bool, state: str) -> tuple[bytes, str]:
        if isinstance(outcome, UpstreamError):
            reply = self._answer_failure(data, query, route, tcp, outcome)
            return reply, state if reply[3] & 0x0F == wire.SERVFAIL else STALE
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            return b"", state  # cancelled (shutdown): nobody to answer
        log.error("internal error answering a query", exc_info=outcome)
        return self.servfail(data, query), state

    def _shared_reply(self, template: Template, data: bytes, query: wire.Query,
                      tcp: bool) -> bytes:
        """A waiter's reply from the exchange's template: the waiters with the same shaping
        inputs share one shape.Replies (built once per order, then only the ID differs)."""
        shared_template, by_shape = self._shared
        if shared_template is not template:
            by_shape = {}
            self._shared = (template, by_shape)
        max_udp = self.options.max_udp
        limit = shape.TCP_LIMIT if tcp else shape.udp_limit(query, max_udp)
        key = shape.shape_key(query, limit)
        replies = by_shape.get(key)
        if replies is None:
            replies = by_shape[key] = shape.Replies(template, template.body, query, limit,
                                                    max_udp, self.rng)
        reply = replies.reply(data[:2])
        if reply[2] & 0x02:
            self.stats.truncated += 1
        return reply

    def _answer_failure(self, data: bytes, query: wire.Query, route: Route, tcp: bool,
                        exc: UpstreamError) -> bytes:
        """RFC 8767: an expired positive entry beats SERVFAIL when every server failed."""
        entry = self.cache.get(query.key)
        if entry is not None and entry.servable_stale:
            entry.failed_until = self.now() + route.policy.stale_ttl
            return self._stale(entry, query, tcp)
        log.debug("SERVFAIL for %s: %s", wire.name_to_text(query.qname), exc)
        self.stats.servfail += 1
        if exc.rcode == wire.SERVFAIL and entry is None:
            self._remember_servfail(query, route)
        return self.servfail(data, query)

    def _stale(self, entry: Entry, query: wire.Query, tcp: bool) -> bytes:
        self.stats.stale += 1
        return self._shape(entry.template, entry.stale_body(), query, tcp)

    def _remember_servfail(self, query: wire.Query, route: Route) -> None:
        """Servers that answered SERVFAIL are spared the same question for a few seconds."""
        if route.policy.servfail_ttl <= 0:
            return
        template = empty_template(query, wire.SERVFAIL)
        self.cache.put(query.key, Entry(template, Kind.SERVFAIL, self.now(),
                                        route.policy.servfail_ttl, 0, route.zone))

    def _refresh_in_background(self, query: wire.Query, entry: Entry) -> None:
        """Prefetch or stale refresh: one background exchange per entry at a time."""
        if entry.refreshing:
            return
        route = self.options.router.route(query.qname)
        refreshed = partial(self._refreshed, entry, route)
        joined = self.exchanges.join(query.key, refreshed)
        if joined is ABSENT:
            if not self._may_start(None):
                return
            self.exchanges.start(query.key, self.fetcher.fetch(query, route), refreshed)
        elif joined is FULL:
            return
        else:
            self.stats.coalesced += 1
        entry.refreshing = True

    def _refreshed(self, entry: Entry, route: Route, outcome: Outcome) -> None:
        entry.refreshing = False
        if outcome.__class__ is Template:
            self.stats.refreshes += 1
        elif isinstance(outcome, UpstreamError):
            entry.failed_until = self.now() + route.policy.stale_ttl
        elif isinstance(outcome, Exception):
            log.error("background refresh failed", exc_info=outcome)


def client_network(client: Any) -> object:
    """The network a client address belongs to for fair shares: its /24 (IPv4) or /56
    (IPv6); None when there is no client (background refreshes)."""
    if not client:
        return None
    host = client[0]
    if ":" not in host:
        return host.rpartition(".")[0]
    return socket.inet_pton(socket.AF_INET6, host.partition("%")[0])[:7]
