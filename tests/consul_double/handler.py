"""The per-query pipeline: accept rules, zone routing, faults, plan, shaping. No sockets."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from . import answers_legacy, answers_modern
from .faults import Faults
from .names import ARPA, ROOT, route
from .plan import FORMERR, NOTIMP, REFUSED, SERVFAIL, Plan
from .shaping import render, reply_flags
from .snapshot import Snapshot
from .state import DoubleState
from .wire import (
    FLAG_AD,
    FLAG_CD,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    MalformedQuery,
    Query,
    Unanswerable,
    encode,
    header_only,
    parse_header,
    parse_query,
)

PLAN_CACHE_LIMIT = 50_000
MAX_CACHED_UNITS = 5  # 120 orders at most; larger services are rendered every time
RENDER_CACHE_LIMIT = 512
REPLY_INPUT_FLAGS = FLAG_RD | FLAG_CD | 0x7800  # and the opcode
OPCODE_QUERY = 0
OPCODE_NOTIFY = 4


class Close:
    """Close the TCP connection without answering."""


CLOSE = Close()


@dataclass(frozen=True, slots=True)
class Deferred:
    """Answer later: data after delay, or forward the query to the recursors."""

    delay: float
    data: bytes | None = None
    forward: tuple[bytes, Query, Snapshot] | None = None


Action = bytes | Deferred | Close | None


def _modern_reject(header: Query, query: Query | None) -> bytes | None | bool:
    """miekg's defaultMsgAcceptFunc; False when the query is accepted."""
    if header.flags & FLAG_QR:
        return None
    kept = header.flags & (FLAG_RD | FLAG_TC | FLAG_RA | FLAG_AD | FLAG_CD)
    if header.opcode not in (OPCODE_QUERY, OPCODE_NOTIFY):
        return header_only(header, kept | FLAG_QR | (header.opcode << 11), NOTIMP)
    too_many = header.ancount > 1 or header.nscount > 1 or header.arcount > 2
    if header.qdcount != 1 or too_many or query is None:
        return header_only(header, kept | FLAG_QR, FORMERR)
    return False


def _legacy_reject(header: Query, query: Query | None) -> bytes | bool:
    """0.6.4's old miekg: unparseable -> FORMERR; no question -> SERVFAIL from the mux."""
    flags = FLAG_QR | (header.flags & (FLAG_RD | FLAG_CD))
    if query is None:
        return header_only(header, flags, FORMERR)
    if header.qdcount == 0:
        return header_only(header, flags, SERVFAIL)
    return False


def build_plan(snap: Snapshot, query: Query, zone: str, rpc_ok: bool) -> Plan:
    if snap.modern:
        if zone == ARPA:
            return answers_modern.plan_ptr(snap, query, rpc_ok)
        return answers_modern.plan_zone(snap, query, zone, rpc_ok)
    if zone == ARPA:
        return answers_legacy.plan_ptr(snap, query, rpc_ok)
    return answers_legacy.plan_zone(snap, query, zone, rpc_ok)


class Handler:
    """Turns query bytes into an Action; shared by the UDP and TCP listeners."""

    def __init__(self, state: DoubleState, rng: random.Random | None = None) -> None:
        self.state = state
        self.rng = rng or random.Random()

    def handle(self, data: bytes, transport: str) -> Action:
        try:
            query: Query | None = parse_query(data)
            header = query
        except Unanswerable:
            self.state.count(None, transport)
            return None
        except MalformedQuery:
            query, header = None, parse_header(data)
        state = self.state
        state.count(query, transport)
        faults = state.faults
        if faults.drop:
            return None
        if faults.close_tcp and transport == "tcp":
            return CLOSE
        snap = state.dns_snapshot()
        rejected = _modern_reject(header, query) if snap.modern else _legacy_reject(header, query)
        if rejected is not False:
            return rejected
        return self._answer(snap, faults, data, query, transport)

    def _answer(self, snap: Snapshot, faults: Faults, data: bytes, query: Query,
                transport: str) -> Action:
        modern = snap.modern
        rpc_ok = faults.servfail is None
        zone, plan = self._route_and_plan(snap, query, rpc_ok)
        delay = faults.latency
        if zone is None:
            # No handler: miekg answers REFUSED now, SERVFAIL in 0.6.4's vendored copy.
            rcode = REFUSED if modern else SERVFAIL
            flags = reply_flags(query, aa=False, ra=False, modern=modern)
            return _later(delay, encode(query, flags, rcode, ([], [], []), modern))
        if zone == ROOT:
            return Deferred(delay, forward=(data, query, snap))
        if not rpc_ok:
            delay += faults.servfail
        if plan.recurse:
            return Deferred(delay, forward=(data, query, snap))
        return _later(delay, self._render(snap, plan, query, transport))

    def _render(self, snap: Snapshot, plan: Plan, query: Query, transport: str) -> bytes:
        """Shuffle (as Consul does on every lookup), then render or reuse a rendering.

        Only the unit order, a few header bits, the EDNS record, the transport and the
        SOA serial (the current second) vary between replies to one question, so a
        rendered reply is reused with the query's ID patched in.
        """
        order = list(range(len(plan.units)))
        self.rng.shuffle(order)  # Fisher-Yates, as CheckServiceNodes.Shuffle
        key = (tuple(order), transport, query.flags & REPLY_INPUT_FLAGS, query.edns,
               int(time.time()))
        rendered = plan.rendered if len(order) <= MAX_CACHED_UNITS else {}
        data = rendered.get(key)
        if data is None:
            cfg = snap.config
            data = render(plan, query, transport, snap.modern, cfg.udp_answer_limit,
                          cfg.enable_truncate, cfg.srv_trim_bug, order,
                          cfg.keep_opt_when_trimmed)
            if len(rendered) >= RENDER_CACHE_LIMIT:
                rendered.clear()
            rendered[key] = data
        return query.id.to_bytes(2, "big") + data[2:]

    def _route_and_plan(self, snap: Snapshot, query: Query, rpc_ok: bool):
        """(zone, plan); cached per question bytes while servers are reachable."""
        key = (query.question, query.edns is not None)
        entry = snap.plans.get(key) if rpc_ok else None
        if entry is None:
            zone = route(query.labels, query.qtype, snap.zones, bool(snap.config.recursors))
            plan = None if zone in (None, ROOT) else build_plan(snap, query, zone, rpc_ok)
            entry = (zone, plan)
            if rpc_ok:
                if len(snap.plans) >= PLAN_CACHE_LIMIT:
                    snap.plans.clear()
                snap.plans[key] = entry
        return entry


def _later(delay: float, data: bytes) -> Action:
    return data if delay <= 0 else Deferred(delay, data)
