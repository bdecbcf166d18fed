"""Answers of the 0.6.4 agent (command/agent/dns.go at v0.6.4)."""

from __future__ import annotations

from .health import Instance, healthy, matches_tags
from .names import Lookup, parse_legacy, strip_zone
from .plan import (
    MODE_SRV,
    NOERROR,
    NXDOMAIN,
    NXDOMAIN_OUTCOME,
    SERVFAIL,
    SERVFAIL_OUTCOME,
    TRIM_LEGACY,
    Outcome,
    Plan,
    Unit,
)
from .records import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_CNAME,
    TYPE_SOA,
    TYPE_SRV,
    Record,
    address_record,
    cname_record,
    parse_ip,
    ptr_record,
    soa_record,
    srv_record,
)
from .snapshot import Snapshot, reverse_name
from .wire import Query


def soa(snap: Snapshot) -> Record:
    """0.6.4's SOA: postmaster, TTL and minimum hard-coded to 0."""
    return soa_record(snap.config.domain, "postmaster", 3600, 600, 86400, 0)


def format_node_record(address: str, owner: str | None, qtype: int, ttl: int) -> list[Record]:
    """formatNodeRecord: A, AAAA or (for a hostname) a CNAME, by qtype."""
    ip = parse_ip(address)
    if ip is not None and ip.version == 4 and qtype in (TYPE_ANY, TYPE_A):
        return [address_record(owner, ip, ttl)]
    if ip is not None and ip.version == 6 and qtype in (TYPE_ANY, TYPE_AAAA):
        return [address_record(owner, ip, ttl)]
    if ip is None and qtype in (TYPE_ANY, TYPE_CNAME, TYPE_A, TYPE_AAAA):
        target = address if address.endswith(".") else address + "."
        return [cname_record(owner, target, ttl)]
    return []


def _units(snap: Snapshot, instances: list[Instance], qtype: int, dc: str, ttl: int) -> list[Unit]:
    """Address records per distinct address, or SRV + Additional per (node, address, port).

    0.6.4 builds both lists from the same shuffled order; for SRV the address list is
    always empty and for other qtypes there is no SRV list, so one unit list suffices.
    """
    units = []
    for inst in instances:
        address = inst.service.address or inst.node.address
        if qtype != TYPE_SRV:
            records = format_node_record(address, None, qtype, ttl)
            if records:
                units.append(Unit(tuple(records), (), address))
            continue
        target = f"{inst.node.name}.node.{dc}.{snap.config.domain}"
        srv = srv_record(None, 1, inst.service.port, target, ttl)
        extra = format_node_record(address, target, TYPE_ANY, ttl)
        key = (inst.node.name, inst.service.address, inst.service.port)
        units.append(Unit((srv,), tuple(extra), key))
    return units


def _service_ttl(snap: Snapshot, service: str, ttl: int | None = None) -> int:
    return snap.service_ttl(service) if ttl is None else ttl


def _service_outcome(snap: Snapshot, instances: list[Instance], qtype: int, dc: str,
                     ttl: int, only_passing: bool) -> Outcome:
    instances = healthy(instances, only_passing)
    if not instances:
        return NXDOMAIN_OUTCOME
    return Outcome(units=tuple(_units(snap, instances, qtype, dc, ttl)), mode=MODE_SRV,
                   trimmable=True)


def service_lookup(snap: Snapshot, lookup: Lookup, qtype: int, rpc_ok: bool) -> Outcome:
    dc = snap.datacenter(lookup.datacenter)
    # An unknown datacenter is an RPC error ("No path to datacenter"): SERVFAIL.
    if not rpc_ok or not snap.knows_datacenter(dc):
        return SERVFAIL_OUTCOME
    instances = snap.service_instances(dc, lookup.name, lookup.tag)
    ttl = _service_ttl(snap, lookup.name)
    return _service_outcome(snap, instances, qtype, dc, ttl, snap.config.only_passing)


def prepared_lookup(snap: Snapshot, lookup: Lookup, qtype: int, rpc_ok: bool) -> Outcome:
    dc = snap.datacenter(lookup.datacenter)
    if not rpc_ok or not snap.knows_datacenter(dc):
        return SERVFAIL_OUTCOME
    query = snap.prepared_query(lookup.name)
    if query is None:
        return NXDOMAIN_OUTCOME
    instances = [i for i in snap.service_instances(dc, query.service, "")
                 if matches_tags(i, query.tags)]
    ttl = _service_ttl(snap, query.service, query.ttl)
    return _service_outcome(snap, instances, qtype, dc, ttl, query.only_passing)


def node_lookup(snap: Snapshot, lookup: Lookup, qtype: int, rpc_ok: bool) -> Outcome:
    if qtype not in (TYPE_ANY, TYPE_A, TYPE_AAAA):
        return Outcome()
    dc = snap.datacenter(lookup.datacenter)
    if not rpc_ok or not snap.knows_datacenter(dc):
        return SERVFAIL_OUTCOME
    node = snap.node(dc, lookup.name)
    if node is None:
        return NXDOMAIN_OUTCOME
    records = format_node_record(node.address, None, qtype, snap.config.node_ttl)
    return Outcome(answer=tuple(records))


def dispatch(snap: Snapshot, lookup: Lookup, qtype: int, rpc_ok: bool) -> Outcome:
    if lookup.kind == "service":
        return service_lookup(snap, lookup, qtype, rpc_ok)
    if lookup.kind == "node":
        return node_lookup(snap, lookup, qtype, rpc_ok)
    if lookup.kind == "query":
        return prepared_lookup(snap, lookup, qtype, rpc_ok)
    return NXDOMAIN_OUTCOME


def plan_zone(snap: Snapshot, query: Query, zone: str, rpc_ok: bool) -> Plan:
    """handleQuery: an SOA qtype gets the SOA in Authority first, then the lookup runs."""
    plan = Plan(ra=bool(snap.config.recursors))
    authority = [soa(snap)] if query.qtype == TYPE_SOA else []
    lookup = parse_legacy(strip_zone(query.labels, zone))
    outcome = dispatch(snap, lookup, query.qtype, rpc_ok)
    if outcome.error == "servfail":
        plan.rcode = SERVFAIL
    elif outcome.error == "nxdomain":
        plan.rcode = NXDOMAIN
        authority.append(soa(snap))
    else:
        plan.rcode = NOERROR
        plan.answer, plan.additional = outcome.answer, outcome.additional
        plan.units, plan.mode = outcome.units, outcome.mode
        if outcome.trimmable:
            plan.trim = TRIM_LEGACY
            plan.legacy_empty_soa = soa(snap)
    plan.authority = tuple(authority)
    return plan


def plan_ptr(snap: Snapshot, query: Query, rpc_ok: bool) -> Plan:
    """handlePtr: node addresses of the agent's DC only; otherwise always recurse."""
    plan = Plan(ra=bool(snap.config.recursors))
    qname = query.name.lower()
    dc = snap.config.datacenter
    for node in snap.nodes_by_name(dc) if rpc_ok else []:
        if reverse_name(node.address) == qname:
            target = f"{node.name}.node.{dc}.{snap.config.domain}"
            plan.answer = (ptr_record(None, target),)
            plan.authority = (soa(snap),) if query.qtype == TYPE_SOA else ()
            return plan
    plan.recurse = True
    return plan
