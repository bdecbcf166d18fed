"""The optional query log: one line per query, as text (logfmt) or JSON.

Off by default (`[log] queries = true` or `--log-queries`). The handler calls `resolved`
for answers that needed an upstream exchange; the listeners call `answered` for replies
given at once (cache hits, stale answers, refusals, bad queries), and only when the log is
on, so a server without it pays one attribute check per packet.
"""

from __future__ import annotations

import logging

import dns.rcode
import dns.rdatatype

from consuldns import address
from consuldns.dns import wire
from consuldns.errors import FormatError, MalformedPacket
from consuldns.serve.cache import State

log = logging.getLogger("consuldns.queries")

# Cache states of the queries answered at once; the slow path's come from serve/handler.py.
HIT, STALE, REFUSED, NONE = "hit", "stale", "refused", "-"


class QueryLog:
    """Writes query lines to the `consuldns.queries` logger (JSON via ops/logs.py)."""

    def resolved(self, client, query: wire.Query, zone: str, state: str, reply: bytes,
                 elapsed: float, tcp: bool) -> None:
        """A query answered on the slow path (upstream, coalesced, stale after failure)."""
        self._write(client, query.qname, query.qtype, zone, state, reply, elapsed, tcp)

    def answered(self, handler, client, data: bytes, reply: bytes, tcp: bool,
                 refused: bool = False) -> None:
        """A query answered at once; its route and cache state are looked up here."""
        try:
            query = wire.parse_query(data)
        except (MalformedPacket, FormatError):
            self._write(client, b"\x00", 0, NONE, REFUSED if refused else NONE, reply, 0.0, tcp)
            return
        zone = handler.options.router.route(query.qname).zone
        state = REFUSED if refused else _cache_state(handler, query)
        self._write(client, query.qname, query.qtype, zone, state, reply, 0.0, tcp)

    def _write(self, client, qname: bytes, qtype: int, zone: str, state: str, reply: bytes,
               elapsed: float, tcp: bool) -> None:
        fields = {
            "client": _client_text(client),
            "name": wire.name_to_text(qname) if qtype else "-",
            "type": dns.rdatatype.to_text(qtype) if qtype else "-",
            "transport": "tcp" if tcp else "udp",
            "route": zone,
            "cache": state,
            "rcode": dns.rcode.to_text(reply[3] & 0x0F) if len(reply) >= 12 else "DROPPED",
            "answers": wire.U16.unpack_from(reply, 6)[0] if len(reply) >= 12 else 0,
            "ms": round(elapsed * 1000, 2),
        }
        log.info(" ".join(f"{key}={value}" for key, value in fields.items()),
                 extra={"query": fields})


def _cache_state(handler, query: wire.Query) -> str:
    """What the cache held for a query answered at once: a hit, a stale answer, or neither."""
    entry = handler.cache.get(query.key)
    if entry is None:
        return NONE
    return _LOGGED_STATE[entry.state(handler.now())]


_LOGGED_STATE = {State.FRESH: HIT, State.STALE: STALE, State.EXPIRED: NONE}


def _client_text(client) -> str:
    return address.show(client[0], client[1]) if client else "-"
