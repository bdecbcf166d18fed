"""Per-query shaping: Consul's shuffle, dedup, trimming, EDNS and the final encoding."""

from __future__ import annotations

import struct

from .plan import (
    MODE_NS_ANSWER,
    MODE_RECORDS,
    MODE_SRV,
    NOTIMP,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    TRIM_LEGACY,
    TRIM_MODERN,
    Plan,
    Unit,
)
from .records import TYPE_CNAME, TYPE_SRV, Record, opt_record
from .wire import FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RA, FLAG_RD, OPT_ECS, Query, encode, set_tc

MAX_NS = 3
MAX_UDP_ANSWER_LIMIT = 8
DEFAULT_UDP_SIZE = 512
MAX_UDP_DATAGRAM = 65535 - 68
MAX_TCP_SIZE = 65523
LEGACY_MAX_ANSWERS = 3


def _records_mode(units: list[Unit], a_limit: int) -> list[Record]:
    """addServiceNodeRecordsToMessage: dedup, CNAME only if no address, a_record_limit."""
    seen = set()
    answer: list[Record] = []
    first_cname: tuple[Record, ...] = ()
    count = 0
    for unit in units:
        if unit.key in seen:
            continue
        seen.add(unit.key)
        if unit.cname:
            first_cname = first_cname or unit.answer
            continue
        answer.extend(unit.answer)
        count += 1
        if count == a_limit:
            return answer
    return answer or list(first_cname)


def _srv_mode(units: list[Unit]) -> tuple[list[Record], list[Record]]:
    seen = set()
    answer: list[Record] = []
    extra: list[Record] = []
    for unit in units:
        if unit.key in seen:
            continue
        seen.add(unit.key)
        answer.extend(unit.answer)
        extra.extend(unit.extra)
    return answer, extra


def _ns_mode(units: list[Unit]) -> tuple[list[Record], list[Record]]:
    chosen = units[:MAX_NS]
    return [r for u in chosen for r in u.answer], [r for u in chosen for r in u.extra]


def materialize(plan: Plan, order: list[int]) -> tuple[list[Record], list[Record], list[Record]]:
    """Sections for one reply, the units taken in the given (shuffled) order."""
    answer, authority, extra = list(plan.answer), list(plan.authority), list(plan.additional)
    if not plan.units:
        return answer, authority, extra
    units = [plan.units[i] for i in order]
    if plan.mode == MODE_RECORDS:
        answer += _records_mode(units, plan.a_limit)
    elif plan.mode == MODE_SRV:
        more, glue = _srv_mode(units)
        answer += more
        extra += glue
    else:
        ns, glue = _ns_mode(units)
        (answer if plan.mode == MODE_NS_ANSWER else authority).extend(ns)
        extra += glue
    return answer, authority, extra


class Message:
    """Sections of a reply being trimmed. Section lists are replaced, never mutated,
    so the last encoding can be reused while the same lists are in place."""

    __slots__ = ("_cache", "answer", "authority", "extra", "flags", "kept_opt", "query",
                 "rcode")

    def __init__(self, query: Query, flags: int, rcode: int, answer: list[Record],
                 authority: list[Record], extra: list[Record]) -> None:
        self.query, self.flags, self.rcode = query, flags, rcode
        self.answer, self.authority, self.extra = answer, authority, extra
        self.kept_opt: list[Record] = []  # OPT records _sync_extra keeps (keep_opt_when_trimmed)
        self._cache: tuple | None = None

    def encode(self, compress: bool) -> bytes:
        cache = self._cache
        if (cache is not None and cache[0] == compress and cache[1] is self.answer
                and cache[2] is self.authority and cache[3] is self.extra):
            return cache[4]
        data = encode(self.query, self.flags, self.rcode,
                      (self.answer, self.authority, self.extra), compress)
        # Holding the lists keeps their ids from being reused while cached.
        self._cache = (compress, self.answer, self.authority, self.extra, data)
        return data

    def size(self, compress: bool) -> int:
        return len(self.encode(compress))


def _owner_key(record: Record, query: Query) -> str:
    return (query.name if record.owner is None else record.owner).lower()


def _index(msg: Message) -> dict[str, Record]:
    """First extra RR per lowercased owner (indexRRs)."""
    index: dict[str, Record] = {}
    for record in msg.extra:
        index.setdefault(_owner_key(record, msg.query), record)
    return index


def _sync_extra(index: dict[str, Record], msg: Message) -> None:
    """syncExtra: keep one extra RR per remaining SRV target (drops meta TXT and OPT)."""
    extra: list[Record] = []
    resolved: set[str] = set()
    for record in msg.answer:
        if record.rtype != TYPE_SRV:
            continue
        target = record.target().lower()
        while target not in resolved:
            resolved.add(target)
            found = index.get(target)
            if found is None:
                break
            extra.append(found)
            if found.rtype != TYPE_CNAME:
                break
            target = found.target().lower()
    msg.extra = extra + msg.kept_opt


def _binary_truncate(msg: Message, max_size: int, index, has_extra: bool, compress: bool) -> int:
    original = msg.answer
    start, end = 0, len(original) + 1
    while end - start > 1:
        median = start + (end - start) // 2
        msg.answer = original[:median]
        if has_extra:
            _sync_extra(index, msg)
        size = msg.size(compress)
        if size <= max_size:
            if max_size - size < 10:
                return median
            start = median
        else:
            end = median
    return start


def _shrink(msg: Message, limit: int, search_limit: int, index, has_extra: bool,
            compress: bool) -> bool:
    """Drop Authority, then answers, until the message fits (at least one answer stays)."""
    shrunk = False
    while len(msg.answer) > 1 and msg.size(compress) > limit:
        shrunk = True
        msg.authority = []
        if msg.size(compress) - search_limit > 100:
            original = msg.answer
            msg.answer = original[:_binary_truncate(msg, search_limit, index, has_extra, compress)]
        else:
            msg.answer = msg.answer[:-1]
        if has_extra:
            _sync_extra(index, msg)
    return shrunk


def trim_modern_udp(msg: Message, udp_answer_limit: int) -> bool:
    """trimUDPResponse: count cap without EDNS (sized uncompressed), then the byte limit."""
    num = len(msg.answer)
    has_extra = bool(msg.extra)
    index = _index(msg) if has_extra else {}
    max_size = DEFAULT_UDP_SIZE
    edns = msg.query.edns
    if edns is not None and edns.udp_size > max_size:
        max_size = edns.udp_size
    max_size = min(max_size, MAX_UDP_DATAGRAM)
    compress = True
    max_answers = min(MAX_UDP_ANSWER_LIMIT, udp_answer_limit)
    if max_size == DEFAULT_UDP_SIZE and num > max_answers:
        compress = False
        msg.answer = msg.answer[:max_answers]
        if has_extra:
            _sync_extra(index, msg)
    _shrink(msg, max_size - 8, max_size, index, has_extra, compress)
    return len(msg.answer) < num


def trim_modern_tcp(msg: Message) -> bool:
    """trimTCPResponse: at most 4096 answers (1024 SRV) and about 64 KB."""
    has_extra = bool(msg.extra)
    cap = 1024 if msg.query.qtype == TYPE_SRV else 4096
    if len(msg.answer) > cap:
        msg.answer = msg.answer[:cap]
    index = _index(msg) if has_extra else {}
    return _shrink(msg, MAX_TCP_SIZE, MAX_TCP_SIZE, index, has_extra, True)


def _legacy_sync(msg: Message, bug: bool) -> None:
    """0.7.0's fix keeps Additional in step with the SRV answers; 0.6.4 (bug) did not."""
    if bug:
        return
    targets = {r.target().lower() for r in msg.answer if r.rtype == TYPE_SRV}
    msg.extra = [r for r in msg.extra if _owner_key(r, msg.query) in targets]


def trim_legacy_udp(msg: Message, bug: bool) -> bool:
    """trimUDPAnswers at 0.6.4: 3 answers, then <=512 bytes uncompressed, maybe to zero."""
    num = len(msg.answer)
    if num > LEGACY_MAX_ANSWERS:
        msg.answer = msg.answer[:LEGACY_MAX_ANSWERS]
        _legacy_sync(msg, bug)
    while msg.answer and msg.size(False) > DEFAULT_UDP_SIZE:
        msg.answer = msg.answer[:-1]
        _legacy_sync(msg, bug)
    return len(msg.answer) < num


def ecs_option(query: Query, rcode: int, global_scope: bool) -> bytes:
    """The client's ECS option mirrored; scope 0 unless the answer is subnet-specific."""
    ecs = query.edns.ecs if query.edns else None
    if ecs is None or len(ecs) < 4:
        return b""
    family, source = struct.unpack_from("!HB", ecs)
    scope = 0
    if not global_scope and rcode not in (NXDOMAIN, SERVFAIL, REFUSED, NOTIMP):
        scope = source
    body = struct.pack("!HBB", family, source, scope) + ecs[4:]
    return struct.pack("!HH", OPT_ECS, len(body)) + body


def modern_opt(query: Query, rcode: int, global_scope: bool) -> list[Record]:
    """setEDNS: an OPT with the client's own UDP size whenever the query had one."""
    if query.edns is None:
        return []
    return [opt_record(query.edns.udp_size, ecs_option(query, rcode, global_scope))]


def reply_flags(query: Query, aa: bool, ra: bool, modern: bool) -> int:
    """SetReply: QR, opcode (modern keeps it), RD and CD copied (modern: for QUERY only)."""
    flags = FLAG_QR
    opcode = query.opcode if modern else 0
    flags |= opcode << 11
    if not modern or query.opcode == 0:
        flags |= query.flags & (FLAG_RD | FLAG_CD)
    if aa:
        flags |= FLAG_AA
    if ra:
        flags |= FLAG_RA
    return flags


def render(plan: Plan, query: Query, transport: str, modern: bool, udp_answer_limit: int,
           enable_truncate: bool, srv_trim_bug: bool, order: list[int],
           keep_opt_when_trimmed: bool = False) -> bytes:
    """The reply bytes for one query, its units in the given order."""
    answer, authority, extra = materialize(plan, order)
    opt = modern_opt(query, plan.rcode, plan.ecs_global) if modern else []
    msg = Message(query, reply_flags(query, plan.aa, plan.ra, modern), plan.rcode,
                  answer, authority, extra + opt)
    if keep_opt_when_trimmed:
        msg.kept_opt = opt
    trimmed = False
    if plan.trim == TRIM_MODERN:
        trimmed = trim_modern_udp(msg, udp_answer_limit) if transport == "udp" \
            else trim_modern_tcp(msg)
    elif plan.trim == TRIM_LEGACY:
        if transport == "udp":
            trimmed = trim_legacy_udp(msg, srv_trim_bug)
        if not msg.answer and not (trimmed and enable_truncate):
            msg.authority = msg.authority + [plan.legacy_empty_soa]
    data = msg.encode(modern)
    return set_tc(data) if trimmed and enable_truncate else data
