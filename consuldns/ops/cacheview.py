"""What the admin listener tells about one name: its route and its cache entry; and flushing.

Used by `GET /cache` and `POST /cache/flush`, which `consuldns query --explain` and
`consuldns cache flush` call. Pure functions over a Handler; no sockets.
"""

from __future__ import annotations

import dns.exception
import dns.rcode
import dns.rdatatype

from consuldns.dns import wire
from consuldns.serve.cache import State
from consuldns.serve.handler import Handler

FRESH, STALE, MISS = "fresh", "stale", "miss"


def parse_question(name: str, qtype: str) -> tuple[bytes, int]:
    """Wire name and type number; ValueError with a readable message when invalid."""
    if not name:
        raise ValueError("missing name")
    qname = wire.text_to_name(name)
    try:
        return qname, int(dns.rdatatype.from_text(qtype.upper()))
    except dns.exception.DNSException:
        raise ValueError(f"unknown record type {qtype!r}") from None


def lookup(handler: Handler, qname: bytes, qtype: int, do: bool = False) -> dict:
    """The route of a name and the state of its cache entry, as a JSON-ready dict."""
    route = handler.options.router.route(qname)
    document = {
        "name": wire.name_to_text(qname),
        "type": dns.rdatatype.to_text(qtype),
        "zone": route.zone,
        "agent": route.is_agent,
        "servers": [server.address for server in route.group.servers],
        "down": [s.address for s in route.group.servers if s.down_since is not None],
        "fallback": [s.address for s in route.fallback.servers] if route.fallback else [],
        "policy": route.group.policy,
    }
    document.update(_entry_state(handler, wire.question_key(qname, qtype, do)))
    if route.is_agent:
        document["watch"] = handler.watcher.describe(qname)
    return document


def _entry_state(handler: Handler, key: bytes) -> dict:
    entry = handler.cache.get(key)
    if entry is None:
        return {"state": MISS}
    now = handler.now()
    state = {
        "kind": entry.kind.value,
        "rcode": dns.rcode.to_text(entry.template.rcode),
        "answers": entry.template.sections[0],
        "lifetime": round(entry.expires - entry.stored),
        "own_lifetime": round(entry.natural_expires - entry.stored),  # from the TTLs alone
        "pinned": entry.expires > entry.natural_expires,  # kept longer by the Consul watch
        "age": round(now - entry.stored, 1),
        "hits": entry.hits,
    }
    if entry.state(now) is State.FRESH:
        state.update(state=FRESH, ttl_left=round(entry.expires - now, 1))
    else:
        state.update(state=STALE, ttl_left=0, expired_for=round(now - entry.expires, 1),
                     servable_stale=entry.servable_stale,
                     stale_until_in=round(entry.stale_until - now, 1))
    return state


def flush(handler: Handler, name: str | None) -> dict:
    """Drop every entry, or every entry of one name (all types); how many went."""
    if name:
        count = handler.cache.flush(name=wire.text_to_name(name))
        return {"flushed": count, "name": wire.name_to_text(wire.text_to_name(name))}
    return {"flushed": handler.cache.flush(), "name": None}
