"""Records for service instances and nodes, modern agent (makeNodeServiceRecords & co)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .catalog import Node
from .health import Instance, srv_weight
from .plan import MODE_RECORDS, MODE_SRV, NODATA_OUTCOME, Outcome, Unit
from .records import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_CNAME,
    TYPE_NS,
    TYPE_SRV,
    TYPE_TXT,
    Record,
    address_record,
    cname_record,
    meta_txt_records,
    parse_ip,
    srv_record,
)
from .snapshot import Snapshot

ACCEPT_DOMAIN, ACCEPT_V4, ACCEPT_V6, ACCEPT_ANY = 1, 2, 4, 8
MAX_RECURSE_RECORDS = 5


@dataclass(frozen=True, slots=True)
class Ctx:
    """One question as the builders see it."""

    snap: Snapshot
    qname: str  # as sent, trailing dot
    qtype: int
    resp_domain: str  # the domain suffix as the client wrote it
    edns: bool
    rpc_ok: bool
    # Answers a CNAME target inside the zone; set by answers_modern (which dispatches).
    resolve_cname: Callable[[Ctx, str, int], list[Record]]

    @property
    def node_ttl(self) -> int:
        return self.snap.config.node_ttl


def _accept(qtype: int) -> int:
    if qtype == TYPE_A:
        return ACCEPT_DOMAIN | ACCEPT_V4
    if qtype == TYPE_AAAA:
        return ACCEPT_DOMAIN | ACCEPT_V6
    return ACCEPT_DOMAIN | ACCEPT_ANY


def translate(accept: int, default: str, v6: str = "") -> str:
    """The address Consul would use for this qtype (translateAddressAccept, no WAN)."""
    if accept & ACCEPT_V6 and v6:
        return v6
    if accept & ACCEPT_ANY and default:
        return default
    ip = parse_ip(default)
    if ip is not None and ip.version == 4 and accept & ACCEPT_V4:
        return default
    if ip is not None and ip.version == 6 and accept & ACCEPT_V6:
        return default
    if ip is None and accept & ACCEPT_DOMAIN:
        return default
    return ""


def _address(qtype: int, ip, owner: str | None, ttl: int) -> Record | None:
    """makeARecord: TXT and NS count as address queries too."""
    wanted = (TYPE_SRV, TYPE_ANY, TYPE_NS, TYPE_TXT, TYPE_A if ip.version == 4 else TYPE_AAAA)
    return address_record(owner, ip, ttl) if qtype in wanted else None


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def node_records(ctx: Ctx, node: Node, qtype: int, owner: str | None, ttl: int,
                 level: int) -> list[Record]:
    """makeRecordFromNode: an address record, or a CNAME for a hostname address."""
    addr = translate(_accept(qtype), node.address, node.ipv6)
    ip = parse_ip(addr)
    if ip is not None:
        record = _address(qtype, ip, owner, ttl)
        return [record] if record else []
    if not addr:
        # Read literally, agent/dns.go gives a CNAME to the IPv4 literal here; the double
        # answers NOERROR with no records, the documented answer for a missing type.
        return []
    target = _fqdn(node.address)
    return [cname_record(owner, target, ttl)] + ctx.resolve_cname(ctx, target, level)


def _node_fqdn(ctx: Ctx, node_name: str, dc: str) -> str:
    return f"{node_name}.node.{dc}.{ctx.resp_domain}"


def _addr_fqdn(ctx: Ctx, ip, dc: str) -> str:
    return f"{ip.packed.hex()}.addr.{dc}.{ctx.resp_domain}"


def _srv_or_address(ctx: Ctx, inst: Instance, ip, target: str, dc: str, ttl: int):
    record = _address(ctx.qtype, ip, None, ttl)
    if record is None:
        return [], []
    if ctx.qtype != TYPE_SRV:
        return [record], []
    srv = srv_record(None, srv_weight(inst), inst.service.port, target, ttl)
    return [srv], [record._replace(owner=target)]


def _from_fqdn(ctx: Ctx, inst: Instance, fqdn: str, ttl: int, level: int):
    """makeRecordFromFQDN: hostname addresses, resolved only inside the zone."""
    more = [r._replace(ttl=ttl) for r in ctx.resolve_cname(ctx, _fqdn(fqdn), level)
            if r.rtype in (TYPE_CNAME, TYPE_A, TYPE_AAAA)]
    if not ctx.edns:
        more = more[:MAX_RECURSE_RECORDS]
    if ctx.qtype == TYPE_SRV:
        return [srv_record(None, srv_weight(inst), inst.service.port, _fqdn(fqdn), ttl)], more
    return [cname_record(None, _fqdn(fqdn), ttl)] + more, []


def instance_records(ctx: Ctx, inst: Instance, dc: str, ttl: int, level: int):
    """makeNodeServiceRecords: (answers, extras) for one instance."""
    accept = _accept(ctx.qtype)
    svc_addr = translate(accept, inst.service.address)
    node_addr = translate(accept, inst.node.address, inst.node.ipv6)
    if not svc_addr and not node_addr:
        return [], []
    node_ip, svc_ip = parse_ip(node_addr), parse_ip(svc_addr)
    if not svc_addr and node_ip is not None:
        if inst.node.address != node_addr:
            return _srv_or_address(ctx, inst, node_ip, _addr_fqdn(ctx, node_ip, dc), dc, ttl)
        return _srv_or_address(ctx, inst, node_ip, _node_fqdn(ctx, inst.node.name, dc), dc, ttl)
    if not svc_addr:
        return _from_fqdn(ctx, inst, node_addr, ttl, level)
    if svc_ip is not None:
        return _srv_or_address(ctx, inst, svc_ip, _addr_fqdn(ctx, svc_ip, dc), dc, ttl)
    if _fqdn(svc_addr) == ctx.qname and node_ip is not None:
        return _srv_or_address(ctx, inst, node_ip, _node_fqdn(ctx, inst.node.name, dc), dc, ttl)
    return _from_fqdn(ctx, inst, svc_addr, ttl, level)


def _record_units(ctx: Ctx, instances: list[Instance], dc: str, ttl: int, level: int):
    units = []
    for inst in instances:
        answers, _ = instance_records(ctx, inst, dc, ttl, level)
        if answers:
            first = answers[0]
            key = (first.rtype, first.rdata)
            units.append(Unit(tuple(answers), (), key, first.rtype == TYPE_CNAME))
    return units


def _srv_units(ctx: Ctx, instances: list[Instance], dc: str, ttl: int, level: int):
    units = []
    for inst in instances:
        key = (inst.node.name, translate(ACCEPT_ANY, inst.service.address), inst.service.port)
        answers, extras = instance_records(ctx, inst, dc, ttl, level)
        if ctx.snap.config.enable_additional_node_meta_txt:
            owner = _node_fqdn(ctx, inst.node.name, dc)
            extras = extras + meta_txt_records(owner, dict(inst.node.meta), ttl)
        units.append(Unit(tuple(answers), tuple(extras), key))
    return units


def service_answer(ctx: Ctx, instances: list[Instance], dc: str, ttl: int, level: int) -> Outcome:
    """Units for healthy instances; NODATA when none yields a record of this qtype."""
    if ctx.qtype == TYPE_SRV:
        units, mode = _srv_units(ctx, instances, dc, ttl, level), MODE_SRV
    else:
        units, mode = _record_units(ctx, instances, dc, ttl, level), MODE_RECORDS
    if not any(u.answer for u in units):
        return NODATA_OUTCOME
    return Outcome(units=tuple(units), mode=mode, trimmable=True)
