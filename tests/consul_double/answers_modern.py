"""Answers of the modern agent (1.19.2+ "legacy/v1" server, agent/dns.go)."""

from __future__ import annotations

import ipaddress
import string
from dataclasses import replace

from .health import healthy, matches_tags
from .modern_records import Ctx, node_records, service_answer
from .names import Lookup, parse_modern, response_domain, strip_zone
from .plan import (
    MODE_NS_ANSWER,
    MODE_NS_AUTHORITY,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    NXDOMAIN_OUTCOME,
    SERVFAIL,
    SERVFAIL_OUTCOME,
    TRIM_MODERN,
    Outcome,
    Plan,
    Unit,
)
from .records import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_NS,
    TYPE_SOA,
    TYPE_TXT,
    Record,
    address_record,
    meta_txt_records,
    ns_record,
    parse_ip,
    ptr_record,
    soa_record,
)
from .snapshot import CONSUL_SERVICE, Snapshot, reverse_name
from .wire import Query

MAX_RECURSION = 3
_HEX_DIGITS = set(string.hexdigits)
_INVALID_NODE_NAME = set(".!@#$%^&*()_=+[]{};:'\",<>/?\\|`~ ")


def soa(snap: Snapshot, qname: str) -> Record:
    """Zone SOA; the alt domain only when the question (as sent) ends in it."""
    cfg = snap.config
    zone = cfg.domain
    if cfg.alt_domain and qname.endswith("." + cfg.alt_domain):
        zone = cfg.alt_domain
    s = cfg.soa
    return soa_record(zone, "hostmaster", s.refresh, s.retry, s.expire, s.min_ttl)


def resolve_cname(ctx: Ctx, target: str, level: int) -> list[Record]:
    """In-zone targets are answered internally (at most 3 levels); others need recursors."""
    lowered = target.lower()
    cfg = ctx.snap.config
    in_zone = lowered.endswith("." + cfg.domain) or (
        cfg.alt_domain and lowered.endswith("." + cfg.alt_domain))
    if not in_zone or level < 1:
        return []
    labels = tuple(label for label in target.split(".") if label)
    zone = cfg.domain if lowered.endswith("." + cfg.domain) else cfg.alt_domain
    sub = replace(ctx, qname=target, qtype=TYPE_ANY,
                  resp_domain=response_domain(labels, cfg.domain, cfg.alt_domain))
    lookup = parse_modern(strip_zone(labels, zone), TYPE_ANY)
    outcome = dispatch(sub, lookup, level - 1)
    records = [_with_owner(r, target) for r in outcome.answer]
    for unit in outcome.units:
        records.extend(_with_owner(r, target) for r in unit.answer)
    return records


def _with_owner(record: Record, owner: str) -> Record:
    return record._replace(owner=owner) if record.owner is None else record


def _candidates(snap: Snapshot, dc: str, lookup: Lookup, kind: str) -> list:
    """Instances a service, connect or ingress lookup starts from, before health."""
    if kind == "ingress":
        return snap.ingress_instances(dc, lookup.name)
    instances = snap.service_instances(dc, lookup.name, lookup.tag)
    if kind == "connect":
        return [i for i in instances if i.service.connect]
    return instances


def service_lookup(ctx: Ctx, lookup: Lookup, level: int, kind: str = "service") -> Outcome:
    if not ctx.rpc_ok:
        return SERVFAIL_OUTCOME
    dc = ctx.snap.datacenter(lookup.datacenter)
    if lookup.peer or not ctx.snap.knows_datacenter(dc):
        return NXDOMAIN_OUTCOME
    instances = healthy(_candidates(ctx.snap, dc, lookup, kind), ctx.snap.config.only_passing)
    if not instances:
        return NXDOMAIN_OUTCOME
    return service_answer(ctx, instances, dc, ctx.snap.service_ttl(lookup.name), level)


def prepared_lookup(ctx: Ctx, lookup: Lookup, level: int) -> Outcome:
    """Prepared queries filter by their own only_passing and tags, not the DNS config's."""
    if not ctx.rpc_ok:
        return SERVFAIL_OUTCOME
    dc = ctx.snap.datacenter(lookup.datacenter)
    query = ctx.snap.prepared_query(lookup.name)
    if query is None or not ctx.snap.knows_datacenter(dc):
        return NXDOMAIN_OUTCOME
    instances = [i for i in ctx.snap.service_instances(dc, query.service, "")
                 if matches_tags(i, query.tags)]
    instances = healthy(instances, query.only_passing)
    ttl = query.ttl if query.ttl is not None else ctx.snap.service_ttl(query.service)
    if not instances:
        return NXDOMAIN_OUTCOME
    return service_answer(ctx, instances, dc, ttl, level)._replace(ecs_global=False)


def node_lookup(ctx: Ctx, lookup: Lookup, level: int) -> Outcome:
    # Other qtypes return before any RPC: NOERROR, nothing, and no SOA.
    if ctx.qtype not in (TYPE_ANY, TYPE_A, TYPE_AAAA, TYPE_TXT):
        return Outcome()
    if not ctx.rpc_ok:
        return SERVFAIL_OUTCOME
    dc = ctx.snap.datacenter(lookup.datacenter)
    node = None if lookup.peer else ctx.snap.node(dc, lookup.name)
    if node is None:
        return NXDOMAIN_OUTCOME
    answer = []
    if ctx.qtype != TYPE_TXT:
        answer = node_records(ctx, node, ctx.qtype, None, ctx.node_ttl, level)
    meta = meta_txt_records(None, dict(node.meta), ctx.node_ttl)
    if ctx.qtype in (TYPE_TXT, TYPE_ANY):
        return Outcome(answer=tuple(answer + meta), trimmable=True)
    extra = meta if ctx.snap.config.enable_additional_node_meta_txt else []
    return Outcome(answer=tuple(answer), additional=tuple(extra), trimmable=True)


def addr_lookup(ctx: Ctx, lookup: Lookup) -> Outcome:
    """<hex>.addr: decode the IP; a record of the wrong family goes to Additional."""
    digits = lookup.name
    if len(digits) not in (8, 32) or not set(digits) <= _HEX_DIGITS:
        return NXDOMAIN_OUTCOME
    raw = bytes.fromhex(digits)
    ip = ipaddress.ip_address(raw)
    owner = ctx.qname.lower()[:-len(ctx.resp_domain)] + ctx.resp_domain
    record = address_record(owner, ip, ctx.node_ttl)
    wanted = TYPE_A if len(raw) == 4 else TYPE_AAAA
    if ctx.qtype in (wanted, TYPE_ANY):
        return Outcome(answer=(record,), trimmable=True)
    return Outcome(additional=(record,), trimmable=True)


def virtual_lookup(ctx: Ctx, lookup: Lookup) -> Outcome:
    """The service's virtual IP for any qtype; NOERROR and empty when it has none."""
    if not ctx.rpc_ok:
        return SERVFAIL_OUTCOME
    owner = ctx.qname.lower()[:-len(ctx.resp_domain)] + ctx.resp_domain
    for instances in ctx.snap.instances.values():
        for inst in instances:
            ip = parse_ip(inst.service.virtual_ip)
            if inst.service.name.lower() == lookup.name and ip is not None:
                return Outcome(answer=(address_record(owner, ip, ctx.node_ttl),), trimmable=True)
    return Outcome(trimmable=True)


def dispatch(ctx: Ctx, lookup: Lookup, level: int = MAX_RECURSION) -> Outcome:
    """Route a parsed name to its lookup (agent/dns.go dispatch)."""
    kind = lookup.kind
    if kind == "service":
        return service_lookup(ctx, lookup, level)
    if kind in ("connect", "ingress"):
        return service_lookup(ctx, replace(lookup, tag=""), level, kind)
    if kind == "node":
        return node_lookup(ctx, lookup, level)
    if kind == "query":
        return prepared_lookup(ctx, lookup, level)
    if kind == "addr":
        return addr_lookup(ctx, lookup)
    if kind == "virtual":
        return virtual_lookup(ctx, lookup)
    return NXDOMAIN_OUTCOME


def _valid_ns_name(name: str) -> bool:
    return bool(name) and not (set(name) & _INVALID_NODE_NAME)


def nameserver_units(ctx: Ctx) -> tuple[Unit, ...]:
    """NS + glue per healthy Consul server of the agent's DC; RPC failure gives none."""
    if not ctx.rpc_ok:
        return ()
    snap = ctx.snap
    servers = healthy(snap.service_instances(snap.config.datacenter, CONSUL_SERVICE, ""),
                      snap.config.only_passing)
    units = []
    for inst in servers:
        if not _valid_ns_name(inst.node.name):
            continue
        target = f"{inst.node.name}.node.{inst.node.datacenter}.{ctx.resp_domain}".lower()
        ns = ns_record(ctx.resp_domain, target, ctx.node_ttl)
        glue = node_records(ctx, inst.node, TYPE_ANY, target, ctx.node_ttl, MAX_RECURSION)
        units.append(Unit((ns,), tuple(glue), None))
    return tuple(units)


def _ctx(snap: Snapshot, query: Query, rpc_ok: bool) -> Ctx:
    cfg = snap.config
    return Ctx(snap, query.name, query.qtype,
               response_domain(query.labels, cfg.domain, cfg.alt_domain),
               query.edns is not None, rpc_ok, resolve_cname)


def plan_zone(snap: Snapshot, query: Query, zone: str, rpc_ok: bool) -> Plan:
    """handleQuery: SOA/NS/AXFR first, everything else through dispatch."""
    ctx = _ctx(snap, query, rpc_ok)
    plan = Plan(ra=bool(snap.config.recursors), trim=TRIM_MODERN)
    if query.qtype == TYPE_SOA:
        plan.answer = (soa(snap, query.name),)
        plan.units, plan.mode = nameserver_units(ctx), MODE_NS_AUTHORITY
    elif query.qtype == TYPE_NS:
        plan.units, plan.mode = nameserver_units(ctx), MODE_NS_ANSWER
    elif query.qtype == TYPE_AXFR:
        plan.rcode = NOTIMP
    else:
        lookup = parse_modern(strip_zone(query.labels, zone), query.qtype)
        _apply_outcome(plan, dispatch(ctx, lookup), snap, query)
    return plan


def _apply_outcome(plan: Plan, outcome: Outcome, snap: Snapshot, query: Query) -> None:
    plan.ecs_global = outcome.ecs_global
    if outcome.error == "servfail":
        plan.rcode = SERVFAIL
        return
    if outcome.error in ("nxdomain", "nodata"):
        plan.rcode = NXDOMAIN if outcome.error == "nxdomain" else NOERROR
        plan.authority = (soa(snap, query.name),)
        return
    plan.answer, plan.additional = outcome.answer, outcome.additional
    plan.units, plan.mode = outcome.units, outcome.mode
    plan.a_limit = snap.config.a_record_limit


def plan_ptr(snap: Snapshot, query: Query, rpc_ok: bool) -> Plan:
    """handlePtr: node addresses, then service addresses; else recurse or NXDOMAIN."""
    plan = Plan(ra=bool(snap.config.recursors))
    authority = [soa(snap, query.name)] if query.qtype == TYPE_SOA else []
    target = _ptr_target(snap, query.name.lower()) if rpc_ok else None
    if target is not None:
        plan.answer = (ptr_record(None, target),)
    elif snap.config.recursors:
        plan.recurse = True
    else:
        plan.rcode = NXDOMAIN
        authority.append(soa(snap, query.name))
    plan.authority = tuple(authority)
    return plan


def _ptr_target(snap: Snapshot, qname: str) -> str | None:
    dc, domain = snap.config.datacenter, snap.config.domain
    for node in snap.nodes_by_name(dc):
        if reverse_name(node.address) == qname:
            return f"{node.name}.node.{node.datacenter}.{domain}"
    for inst in snap.instances_in(dc):
        # Consul compares the stored string with the address in Go's canonical form.
        address = inst.service.address
        if reverse_name(address) == qname and str(parse_ip(address)) == address:
            return f"{inst.service.name}.service.{inst.node.datacenter}.{domain}"
    return None

