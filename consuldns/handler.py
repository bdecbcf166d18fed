"""The per-query pipeline: parse -> policy -> route -> cache -> forward -> store -> shape.

`answer_now` is the synchronous fast path (bad input, policy answers and fresh cache hits):
it returns the reply bytes, b"" to drop the packet, or the parsed Query when the answer needs
an upstream exchange, which `resolve` does. This is the only module that maps errors to
rcodes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable

from consuldns import __version__, answer, wire
from consuldns.cache import Cache, Entry, Kind, classify
from consuldns.errors import FormatError, MalformedPacket, UpstreamError
from consuldns.router import Route, Router
from consuldns.stats import Stats
from consuldns.template import Template, empty_template, render
from consuldns.upstream import Answer, Question

log = logging.getLogger("consuldns.handler")

ZONE_TRANSFER_TYPES = frozenset({251, 252})  # IXFR, AXFR
RFC8482_HINFO = b"\x07RFC8482\x00"  # HINFO "RFC8482" "" (RFC 8482 §4.2)
RFC8482_TTL = 3600
CHAOS_TEXTS = {
    wire.text_to_name(name): text
    for names, text in ((("version.bind", "version.server"), lambda: f"consuldns {__version__}"),
                        (("id.server", "hostname.bind"), socket.gethostname))
    for name in names
}
PARSED_MEMO_SIZE = 4096  # distinct query byte strings remembered (cleared when full)


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

    def __init__(self, router: Router, cache: Cache, *, stats: Stats | None = None,
                 timeout: float = 2.0, max_udp: int = 1232, shuffle_addresses: bool = True,
                 shuffle_srv: bool = True, rng: random.Random | None = None,
                 now: Callable[[], float] = time.monotonic, prefetch: bool = False,
                 chaos: bool = False, query_log: Callable[..., None] | None = None):
        self.router = router
        self.cache = cache
        self.stats = stats or Stats()
        self.timeout = timeout
        self.max_udp = max_udp
        self.shuffle_addresses = shuffle_addresses
        self.shuffle_srv = shuffle_srv
        self.rng = rng or random.Random()
        self.now = now
        self.query_log = query_log
        self.prefetch = prefetch
        self.chaos = chaos
        self._inflight: dict[bytes, asyncio.Future[Template]] = {}
        # Queries waiting on an exchange another query started (see follow()).
        self._followers: dict[asyncio.Future[Template], list[tuple]] = {}
        self._background: set[asyncio.Task] = set()
        # Queries that passed parsing and policy, by their bytes after the ID: clients repeat
        # the same bytes with a new ID, and a hit then skips parse_query (~2 us of ~4).
        self._parsed: dict[bytes, Known] = {}

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
            return wire.error_reply(data, None, exc.rcode, max_udp=self.max_udp)
        special = self._policy_answer(data, query)
        if special is not None:
            return special
        parsed = self._parsed
        if len(parsed) >= PARSED_MEMO_SIZE:
            parsed.clear()
        parsed[data[2:]] = Known(query)
        return self._from_cache(query, tcp)

    def _from_cache(self, query: wire.Query, tcp: bool,
                    known: Known | None = None) -> bytes | wire.Query:
        """A fresh (or, while upstream fails, stale) cached reply; else the query to resolve."""
        entry = self.cache.get(query.key)
        if entry is None:
            return query
        now = self.now()
        if now < entry.expires:
            self.stats.cache_hits += 1
            self.stats.zone_hits[entry.zone] += 1
            entry.hits += 1
            if self.prefetch and entry.expires - now < entry.prefetch_margin:
                self._refresh_in_background(query, entry)
            return self._fresh_reply(entry, now, query, tcp, known)
        if now < entry.failed_until and entry.servable_stale:
            # Upstream failed moments ago: answer stale at once and keep trying behind it
            # (RFC 8767 §5, the failure recheck timer) instead of making every client wait.
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
            known.remember(entry, age, tcp,
                           self._shape(entry.template, entry.body_at(now), query, tcp))
        elif known.reply[2] & 0x02:
            self.stats.truncated += 1
        return known.reply

    def _policy_answer(self, data: bytes, query: wire.Query) -> bytes | None:
        if query.edns_version != 0:
            return wire.error_reply(data, query, wire.BADVERS, max_udp=self.max_udp)
        if query.qclass != wire.CLASS_IN:
            if self.chaos and query.qclass == wire.CLASS_CH:
                reply = self._chaos_answer(data, query)
                if reply is not None:
                    return reply
            self.stats.refused += 1
            return wire.error_reply(data, query, wire.REFUSED, max_udp=self.max_udp)
        if query.qtype in ZONE_TRANSFER_TYPES or query.qtype == wire.OPT:
            return wire.error_reply(data, query, wire.NOTIMP, max_udp=self.max_udp)
        if query.qtype == wire.ANY:
            return self._minimal_any(data, query)
        return None

    def _chaos_answer(self, data: bytes, query: wire.Query) -> bytes | None:
        """CHAOS TXT version.bind / id.server (and their aliases), as BIND and unbound answer
        them, for operators who check what is running; None for any other CHAOS question."""
        text = CHAOS_TEXTS.get(query.qname.lower())
        if text is None or query.qtype != wire.TXT:
            return None
        value = text().encode()[:255]
        rdata = bytes([len(value)]) + value
        record = b"\xc0\x0c" + wire.RR_FIXED.pack(wire.TXT, wire.CLASS_CH, 0, len(rdata)) + rdata
        return self._synthesised(data, query, record)

    def _synthesised(self, data: bytes, query: wire.Query, record: bytes) -> bytes:
        """A NOERROR reply holding one record made here (its owner a pointer to the qname)."""
        flags = wire.QR | wire.RA | (query.flags & (wire.RD | wire.CD))
        opt = wire.opt_record(self.max_udp, do=query.do) if query.has_opt else b""
        counts = wire.COUNTS.pack(1, 1, 0, 1 if opt else 0)
        return (wire.TYPE_CLASS.pack(query.id, flags) + counts + data[12:query.question_end]
                + record + opt)

    def _minimal_any(self, data: bytes, query: wire.Query) -> bytes:
        """RFC 8482: answer ANY with one synthesised HINFO record instead of everything."""
        record = (b"\xc0\x0c" + wire.RR_FIXED.pack(13, wire.CLASS_IN, RFC8482_TTL,
                                                     len(RFC8482_HINFO)) + RFC8482_HINFO)
        return self._synthesised(data, query, record)

    def refused(self, data: bytes) -> bytes:
        """REFUSED for a client outside the allowed networks (never recursion for them)."""
        self.stats.refused += 1
        try:
            query = wire.parse_query(data)
        except MalformedPacket:
            return b""
        except FormatError:
            query = None
        return wire.error_reply(data, query, wire.REFUSED, max_udp=self.max_udp)

    def _shape(self, template: Template, body: bytes, query: wire.Query, tcp: bool) -> bytes:
        limit = answer.TCP_LIMIT if tcp else answer.udp_limit(query, self.max_udp)
        reply = answer.build(template, body, query, limit, max_udp=self.max_udp, rng=self.rng)
        if reply[2] & 0x02:
            self.stats.truncated += 1
        return reply

    # ------------------------------------------------------------ slow path

    async def resolve(self, data: bytes, query: wire.Query, tcp: bool, client=None,
                      claimed: asyncio.Future[Template] | None = None) -> bytes:
        """Answer a cache miss (or an expired entry) from upstream, or stale, or SERVFAIL;
        `claimed` is what claim() returned for this query, if it was called."""
        started = self.now()
        route = self.router.route(query.qname)
        self.stats.cache_misses += 1
        self.stats.zone_misses[route.zone] += 1
        state = "coalesced" if claimed is None and query.key in self._inflight else "miss"
        try:
            template = await self._fetch(query, route, claimed)
        except UpstreamError as exc:
            reply = self._answer_failure(data, query, route, tcp, exc)
            state = state if reply[3] & 0x0F == wire.SERVFAIL else "stale"
        else:
            reply = self._shape(template, template.body, query, tcp)
        if self.query_log is not None:
            self.query_log.resolved(client, query, route.zone, state, reply,
                                    self.now() - started, tcp)
        return reply

    def claim(self, query: wire.Query) -> asyncio.Future[Template] | None:
        """Mark query's upstream exchange as under way before the task that makes it starts,
        so that identical queries read in the same wakeup follow it; pass the result to
        resolve(claimed=...), and to release() when that task is done."""
        if query.key in self._inflight:
            return None
        claimed = asyncio.get_running_loop().create_future()
        self._inflight[query.key] = claimed
        return claimed

    def release(self, query: wire.Query, claimed: asyncio.Future[Template] | None) -> None:
        """A claim whose task never ran (cancelled before it started) is withdrawn."""
        if claimed is not None and not claimed.done():
            claimed.cancel()
            if self._inflight.get(query.key) is claimed:
                del self._inflight[query.key]

    def follow(self, data: bytes, query: wire.Query, tcp: bool,
               deliver: Callable[[bytes], None], client=None) -> bool:
        """Join the upstream exchange already under way for the same question, without a task
        of its own (a hot TTL-0 name is mostly such followers): deliver(reply) runs when it
        ends (b"" if it was cancelled). False when there is none to join: call resolve."""
        pending = self._inflight.get(query.key)
        if pending is None:
            return False
        self.stats.cache_misses += 1
        self.stats.coalesced += 1
        waiting = self._followers.get(pending)
        if waiting is None:
            # One callback answers every follower: a callback each would cost the event loop
            # a scheduled handle per query.
            waiting = self._followers[pending] = []
            pending.add_done_callback(self._answer_followers)
        waiting.append((data, query, tcp, deliver, client, self.now()))
        return True

    def _answer_followers(self, future: asyncio.Future[Template]) -> None:
        waiting = self._followers.pop(future, [])
        if not waiting:
            return
        route = self.router.route(waiting[0][1].qname)  # one question: one route
        self.stats.zone_misses[route.zone] += len(waiting)
        for data, query, tcp, deliver, client, started in waiting:
            if future.cancelled():
                deliver(b"")
                continue
            reply, state = self._follower_reply(future, data, query, route, tcp)
            if self.query_log is not None:
                self.query_log.resolved(client, query, route.zone, state, reply,
                                        self.now() - started, tcp)
            deliver(reply)

    def _follower_reply(self, future: asyncio.Future[Template], data: bytes,
                        query: wire.Query, route: Route, tcp: bool) -> tuple[bytes, str]:
        exc = future.exception()
        if exc is None:
            template = future.result()
            return self._shape(template, template.body, query, tcp), "coalesced"
        if isinstance(exc, UpstreamError):
            reply = self._answer_failure(data, query, route, tcp, exc)
            return reply, "coalesced" if reply[3] & 0x0F == wire.SERVFAIL else "stale"
        return wire.error_reply(data, query, wire.SERVFAIL, max_udp=self.max_udp), "coalesced"

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
        return wire.error_reply(data, query, wire.SERVFAIL, max_udp=self.max_udp)

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
        entry.refreshing = True
        task = asyncio.get_running_loop().create_task(self._refresh(query, entry))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh(self, query: wire.Query, entry: Entry) -> None:
        route = self.router.route(query.qname)
        try:
            await self._fetch(query, route)
            self.stats.refreshes += 1
        except UpstreamError:
            entry.failed_until = self.now() + route.policy.stale_ttl
        except Exception:
            log.exception("background refresh failed")
        finally:
            entry.refreshing = False

    async def _fetch(self, query: wire.Query, route: Route,
                     claimed: asyncio.Future[Template] | None = None) -> Template:
        """One upstream exchange per key at a time: concurrent identical misses share it."""
        pending = claimed
        if pending is None:
            pending = self._inflight.get(query.key)
            if pending is not None:
                self.stats.coalesced += 1
                return await asyncio.shield(pending)
            pending = asyncio.get_running_loop().create_future()
            self._inflight[query.key] = pending
        try:
            template = await self._fetch_upstream(query, route)
        except asyncio.CancelledError:
            pending.cancel()
            raise
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()  # mark retrieved: followers may not exist
            raise
        else:
            pending.set_result(template)
        finally:
            del self._inflight[query.key]
        return template

    async def _fetch_upstream(self, query: wire.Query, route: Route) -> Template:
        question = Question(query.qname, query.qtype, query.qclass, query.do, query.cd)
        got = await self._ask_route(question, route)
        self.stats.upstream_replies += 1
        self.stats.observe_upstream(got.server, got.elapsed)
        decision = classify(got.reply, route.policy)
        template = render(got.reply, query.qname, decision.ttls,
                          shuffle_addresses=self.shuffle_addresses, shuffle_srv=self.shuffle_srv)
        if decision.kind in (Kind.POSITIVE, Kind.NEGATIVE):
            entry = Entry(template, decision.kind, self.now(), decision.lifetime,
                          route.policy.stale_window, route.zone, route.policy.stale_ttl)
            self.cache.put(query.key, entry)
        return template

    async def _ask_route(self, question: Question, route: Route) -> Answer:
        """Ask the route's group; a reverse zone falls back to the default upstreams."""
        deadline = self.now() + self.timeout
        if route.fallback is None:
            return await route.group.resolve(question, deadline)
        first_deadline = self.now() + self.timeout / 2
        try:
            got = await route.group.resolve(question, first_deadline)
            if got.reply.rcode != wire.NXDOMAIN:
                return got
        except UpstreamError:
            pass
        return await route.fallback.resolve(question, deadline)
