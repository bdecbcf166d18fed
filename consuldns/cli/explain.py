"""`consuldns query --explain`: is it consuldns or Consul?

Besides the reply, shows the route the name takes (zone, servers), the cache state before
and after the query (from the admin listener), and the answer of the route's first server
asked directly (the Consul agent for names under the Consul domain), side by side, with a
one-line verdict.
"""

from __future__ import annotations

import dataclasses
import json

import dns.flags
import dns.rcode
import dns.rdatatype

from consuldns import address
from consuldns.cli import adminclient
from consuldns.cli import query as querycmd
from consuldns.cli.query import Request, Result
from consuldns.upstream.transport import parse_server

DEFAULT_AGENT = "127.0.0.1:8600"
COLUMN = 40


@dataclasses.dataclass
class Explanation:
    """Everything --explain found out about one question."""

    name: str
    qtype: str
    route: dict | None  # admin /cache answer before the query, or None
    route_error: str | None
    cache_after: dict | None
    direct_label: str
    direct_request: Request | None
    direct: Result | None
    verdict: str = ""


def run(request: Request, admin: str, *, json_output: bool) -> int:
    """Query through consuldns, gather the explanation, print both; the query's exit code."""
    name, qtype = querycmd.question_text(request)
    before, error = _lookup(admin, name, qtype, request.dnssec)
    result = querycmd.ask(request)
    after, _ = _lookup(admin, name, qtype, request.dnssec)
    label, direct_request = _direct_target(request, before, name)
    direct = querycmd.ask(direct_request) if direct_request is not None else None
    found = Explanation(name, qtype, before, error, after, label, direct_request, direct)
    found.verdict = verdict(result, found)
    if json_output:
        print(json.dumps(_document(result, request, found), indent=2))
    else:
        print(querycmd.render(result, request, json_output=False))
        print(render_text(result, request, found))
    return result.exit_code


def _lookup(admin: str, name: str, qtype: str, do: bool) -> tuple[dict | None, str | None]:
    try:
        return adminclient.lookup(admin, name, qtype, do), None
    except (adminclient.AdminUnreachable, ValueError) as exc:
        return None, str(exc)


def _direct_target(request: Request, route: dict | None,
                   name: str) -> tuple[str, Request | None]:
    """Whom to ask directly: the route's first server (the agent over TCP: it never trims)."""
    if route is not None and route["servers"]:
        is_agent = route["agent"]
        server = parse_server(route["servers"][0])
    elif name.lower().rstrip(".").endswith(".consul") or name.lower() == "consul.":
        is_agent, server = True, parse_server(DEFAULT_AGENT)
    else:
        return "upstream", None
    label = "agent" if is_agent else "upstream"
    return label, dataclasses.replace(request, server=server, tcp=is_agent or request.tcp)


def answer_set(result: Result | None) -> tuple[str, frozenset[str]] | None:
    """(rcode, answer records without TTLs) for comparing replies; None for no reply."""
    if result is None or result.message is None:
        return None
    records = frozenset(f"{rrset.name.to_text().lower()} {_type(rrset)} {rdata}"
                        for rrset in result.message.answer for rdata in rrset)
    return dns.rcode.to_text(result.message.rcode()), records


def _type(rrset) -> str:
    return dns.rdatatype.to_text(rrset.rdtype)


def verdict(result: Result, found: Explanation) -> str:
    """One sentence saying where to look."""
    ours, theirs = answer_set(result), answer_set(found.direct)
    who = found.direct_label
    if found.direct is None:
        return "no direct comparison (route unknown: admin listener not reachable)"
    if theirs is None:
        return (f"the {who} itself does not answer ({found.direct.error}): the problem is the "
                f"{who}, not consuldns")
    if ours is None:
        return f"the {who} answers but consuldns does not: look at consuldns (its log, /ready)"
    if ours == theirs:
        return (f"same answer from consuldns and the {who}: if it is wrong, the cause is "
                f"{'in Consul (catalog, health checks)' if who == 'agent' else 'upstream'}")
    cached = found.route or {}
    if cached.get("state") == "fresh" or (cached.get("state") == "stale"
                                          and not _not_kept(cached)):
        return (f"consuldns answered from its cache ({cached['state']}, TTL left "
                f"{cached.get('ttl_left', 0)} s) and the {who} has changed since: wait for the "
                f"TTL or run `consuldns cache flush {found.name}`")
    return (f"consuldns and the {who} disagree although nothing was cached: look at "
            "consuldns's log (--log-queries) for this name")


def render_text(result: Result, request: Request, found: Explanation) -> str:
    lines = ["", f";; EXPLAIN {found.name} {found.qtype}"]
    if found.route is None:
        lines.append(f";; route: unknown ({found.route_error})")
    else:
        lines.append(f";; route: zone {found.route['zone']} -> {_route_servers(found.route)}")
    lines.append(f";; cache: {_cache_text(found.route)} before this query; "
                 f"{_cache_text(found.cache_after)} after")
    if found.route is not None and found.route.get("watch"):
        lines.append(f";; watch: {_watch_text(found.route['watch'])}")
        lines += _instances_text(found.route["watch"].get("instances") or [])
    direct_address = found.direct_request.server.address if found.direct_request else "-"
    lines += [";;", ";; " + "".ljust(9) + f"consuldns {request.server.address}".ljust(COLUMN)
              + f"{found.direct_label} {direct_address}"]
    for title, ours, theirs in _side_by_side(result, found.direct):
        lines.append((";; " + title.ljust(9) + ours.ljust(COLUMN) + theirs).rstrip())
    lines.append(f";; verdict: {found.verdict}")
    return "\n".join(lines)


def _route_servers(route: dict) -> str:
    kind = "agent" if route["agent"] else f"upstreams ({route['policy']})"
    servers = ", ".join(s + (" (down)" if s in route["down"] else "") for s in route["servers"])
    fallback = f", then {', '.join(route['fallback'])}" if route["fallback"] else ""
    return f"{kind} {servers or 'none'}{fallback}"


def _cache_text(state: dict | None) -> str:
    if state is None:
        return "unknown"
    if state["state"] == "fresh" and state.get("pinned"):
        return (f"fresh ({state['rcode']}, TTL {state['own_lifetime']} but pinned by the "
                f"watch: {state['ttl_left']} s left of {state['lifetime']})")
    if state["state"] == "fresh":
        return f"fresh ({state['rcode']}, TTL left {state['ttl_left']} s of {state['lifetime']})"
    if _not_kept(state):
        return ("not kept (TTL 0: consuldns asks the agent for every query, as expected; "
                "[cache.consul] min_ttl or the watch keep answers longer)")
    if state["state"] == "stale":
        return f"stale (expired {state['expired_for']} s ago)"
    return "miss"


def _not_kept(state: dict) -> bool:
    """A TTL-0 answer: stored only for serve-stale, never fresh (not a fault)."""
    return state["state"] == "stale" and state.get("own_lifetime") == 0 \
        and not state.get("pinned")


def _instances_text(instances: list[dict]) -> list[str]:
    """The agent's health view, one line per instance; the checks that keep an instance out
    of DNS answers (critical) or out of only_passing ones (warning) with their output."""
    lines = [";; instances (the agent's HTTP API):"] if instances else []
    for item in instances:
        port = item.get("port")
        where = address.show(item["address"], port) if port else item["address"]
        lines.append(f";;   {where} on {item['node']}: {item['health']}")
        for check in item.get("failing", []):
            output = " ".join(check["output"].split())
            lines.append(f";;     {check['status']}: {check['check']}"
                         + (f": {output}" if output else ""))
    return lines


def _watch_text(watch: dict) -> str:
    if watch["state"] == "off":
        return "off (consul.http): .consul answers are kept by their TTL alone"
    if watch["state"] == "not watched":
        return f"{watch['service']} not watched"
    pinned = watch.get("pinned_answers", 0)
    problem = f"; {watch['problem']}" if watch.get("problem") else ""
    return (f"{watch['service']} {watch['state']}, {pinned} "
            f"{'answer' if pinned == 1 else 'answers'} pinned{problem}")


def _side_by_side(ours: Result, theirs: Result | None) -> list[tuple[str, str, str]]:
    """Rows of (title, consuldns, direct): the header rows, then one row per record, aligned
    so that a record only one side has stands alone on its row."""
    rows = [("rcode", *(_rcode_cell(r) for r in (ours, theirs))),
            ("flags", *(_flags_cell(r) for r in (ours, theirs))),
            ("answers", *(_count_cell(r) for r in (ours, theirs)))]
    left, right = _records(ours), _records(theirs)
    for record in sorted(left | right):
        rows.append(("", record if record in left else "", record if record in right else ""))
    return rows


def _records(result: Result | None) -> set[str]:
    if result is None or result.message is None:
        return set()
    return {f"{_type(rrset)} {rdata}" for rrset in result.message.answer for rdata in rrset}


def _rcode_cell(result: Result | None) -> str:
    if result is None:
        return "not asked"
    if result.message is None:
        return "no reply" if result.outcome is None else "unreadable reply"
    return dns.rcode.to_text(result.message.rcode())


def _flags_cell(result: Result | None) -> str:
    if result is None or result.message is None:
        return ""
    return dns.flags.to_text(result.message.flags).lower()


def _count_cell(result: Result | None) -> str:
    if result is None or result.message is None:
        return ""
    return str(querycmd.record_count(result.message.answer))


def _document(result: Result, request: Request, found: Explanation) -> dict:
    document = ({"reply": querycmd.document_of(result.message, request, result.outcome)}
                if result.message is not None else {"reply": None, "error": result.error})
    direct = found.direct
    document["explain"] = {
        "route": found.route, "route_error": found.route_error,
        "cache_after": found.cache_after,
        "direct": {"role": found.direct_label,
                   "server": found.direct_request.server.address if found.direct_request
                   else None,
                   "reply": querycmd.document_of(direct.message, found.direct_request,
                                                 direct.outcome)
                   if direct is not None and direct.message is not None else None,
                   "error": direct.error if direct is not None else None},
        "verdict": found.verdict,
    }
    return document
