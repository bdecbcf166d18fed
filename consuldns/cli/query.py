"""`consuldns query`: ask one server like dig, with the project's own upstream client."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from consuldns.dns import wire
from consuldns.errors import UpstreamError, UpstreamTimeout
from consuldns.upstream.transport import (
    Question,
    Server,
    exchange_tcp,
    exchange_udp,
    new_query_id,
    parse_server,
)

EXIT_ANSWER, EXIT_NEGATIVE, EXIT_USAGE, EXIT_NO_REPLY = 0, 1, 2, 3


@dataclass(frozen=True)
class Request:
    """A parsed `consuldns query` invocation."""

    qname: bytes
    qtype: int
    server: Server
    tcp: bool
    dnssec: bool
    timeout: float

    @classmethod
    def from_text(cls, name: str, qtype: str, server: str, *, tcp: bool, dnssec: bool,
                  timeout: float) -> Request:
        try:
            qname = dns.name.from_text(name).to_wire()
        except dns.exception.DNSException as exc:
            raise ValueError(f"invalid name {name!r}: {exc}") from None
        try:
            rdtype = dns.rdatatype.from_text(qtype.upper())
        except dns.exception.DNSException:
            raise ValueError(f"unknown record type {qtype!r}") from None
        return cls(qname, int(rdtype), parse_server(server), tcp, dnssec, timeout)


def question_text(request: Request) -> tuple[str, str]:
    """The request's name and type as people write them."""
    return (dns.name.from_wire(request.qname, 0)[0].to_text(),
            dns.rdatatype.to_text(request.qtype))


@dataclass
class Outcome:
    raw: bytes
    transport: str
    elapsed: float


async def exchange(request: Request) -> Outcome:
    """Ask over UDP (then TCP if truncated), or over TCP directly; raise UpstreamError."""
    started = time.monotonic()
    if not request.tcp:
        raw = await _ask_over("udp", request, started)
        if not raw[2] & 0x02:  # TC clear: the whole reply
            return Outcome(raw, "udp", time.monotonic() - started)
    # --tcp, or the UDP reply was truncated: ask (again) over TCP, as dig does
    raw = await _ask_over("tcp", request, started)
    return Outcome(raw, "tcp", time.monotonic() - started)


async def _ask_over(transport: str, request: Request, started: float) -> bytes:
    """One exchange over "udp" or "tcp" within what is left of the request's timeout."""
    question = Question(request.qname, request.qtype, wire.CLASS_IN, request.dnssec)
    qid = new_query_id()
    message = wire.build_query(qid, request.qname, request.qtype, wire.CLASS_IN,
                               edns_size=1232, do=request.dnssec)
    ask = exchange_tcp if transport == "tcp" else exchange_udp
    remaining = max(request.timeout - (time.monotonic() - started), 0.05)
    try:
        return await ask(request.server, message, qid, question, remaining)
    except (UpstreamError, OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
        raise UpstreamError(no_reply_text(request, exc)) from None


def no_reply_text(request: Request, exc: BaseException) -> str:
    """Why the server gave no reply, in words: nothing listens there, silence, or the error."""
    where = request.server.address
    if isinstance(exc, ConnectionRefusedError) or isinstance(exc.__cause__,
                                                             ConnectionRefusedError):
        return f"nothing listens on {where} (connection refused)"
    if isinstance(exc, (TimeoutError, UpstreamTimeout)):
        return f"no reply from {where} within {request.timeout:g} s"
    return f"no reply from {where}: {str(exc) or type(exc).__name__}"


@dataclass
class Result:
    """One server's reply to the question, or why there was none, and the exit code it means."""

    message: dns.message.Message | None
    outcome: Outcome | None
    error: str | None
    exit_code: int


def ask(request: Request) -> Result:
    """Ask the request's server and read the reply."""
    try:
        outcome = asyncio.run(exchange(request))
    except UpstreamError as exc:
        return Result(None, None, str(exc), EXIT_NO_REPLY)
    try:
        message = dns.message.from_wire(outcome.raw)
    except dns.exception.DNSException as exc:
        return Result(None, outcome, f"unreadable reply from {request.server.address}: {exc}",
                      EXIT_NO_REPLY)
    answered = message.rcode() == dns.rcode.NOERROR and bool(message.answer)
    return Result(message, outcome, None, EXIT_ANSWER if answered else EXIT_NEGATIVE)


def run(request: Request, *, json_output: bool) -> int:
    """Print the reply; the exit code."""
    result = ask(request)
    print(render(result, request, json_output))
    return result.exit_code


NOT_THERE_HINT = "is consuldns running there? If it listens elsewhere, pass --server HOST:PORT"


def render(result: Result, request: Request, json_output: bool) -> str:
    if result.message is None and result.outcome is None:
        return f";; {result.error}: {NOT_THERE_HINT}"
    if result.message is None:
        return f";; {result.error}"
    if json_output:
        return render_json(result.message, request, result.outcome)
    return render_text(result.message, request, result.outcome)


def render_text(message: dns.message.Message, request: Request, outcome: Outcome) -> str:
    rcode = dns.rcode.to_text(message.rcode())
    counts = (f"ANSWER: {record_count(message.answer)}, "
              f"AUTHORITY: {record_count(message.authority)}, "
              f"ADDITIONAL: {record_count(message.additional)}")
    flags = dns.flags.to_text(message.flags).lower()
    lines = [f";; status: {rcode}, id: {message.id}", f";; flags: {flags}; QUERY: 1, {counts}"]
    if message.edns >= 0:
        lines.append(f";; EDNS: version {message.edns}, udp {message.payload}"
                     + (", do" if message.ednsflags & dns.flags.DO else ""))
    if message.rcode() == dns.rcode.NOERROR and not message.answer:
        lines.append(";; NODATA: the name exists but has no records of this type")
    for title, rrsets in (("QUESTION", message.question), ("ANSWER", message.answer),
                          ("AUTHORITY", message.authority), ("ADDITIONAL", message.additional)):
        if rrsets:
            lines += ["", f";; {title} SECTION:"]
            lines += [rrset.to_text() if title != "QUESTION" else ";" + rrset.to_text()
                      for rrset in rrsets]
    lines += ["", f";; Query time: {outcome.elapsed * 1000:.1f} msec",
              f";; SERVER: {request.server.address} ({outcome.transport.upper()})",
              f";; MSG SIZE rcvd: {len(outcome.raw)}"]
    return "\n".join(lines)


def record_count(rrsets) -> int:
    """The records of a section (dnspython groups them in rrsets)."""
    return sum(len(rrset) for rrset in rrsets)


def section_json(rrsets) -> list[dict]:
    return [{"name": rrset.name.to_text(), "ttl": rrset.ttl,
             "class": dns.rdataclass.to_text(rrset.rdclass),
             "type": dns.rdatatype.to_text(rrset.rdtype), "data": rdata.to_text()}
            for rrset in rrsets for rdata in rrset]


def document_of(message: dns.message.Message, request: Request, outcome: Outcome) -> dict:
    """The JSON form of a reply (`query --json`)."""
    name, qtype = question_text(request)
    return {
        "rcode": dns.rcode.to_text(message.rcode()),
        "flags": dns.flags.to_text(message.flags).split(),
        "question": {"name": name, "type": qtype},
        "answer": section_json(message.answer),
        "authority": section_json(message.authority),
        "additional": section_json(message.additional),
        "server": request.server.address,
        "transport": outcome.transport,
        "query_time_ms": round(outcome.elapsed * 1000, 2),
        "size": len(outcome.raw),
    }


def render_json(message: dns.message.Message, request: Request, outcome: Outcome) -> str:
    return json.dumps(document_of(message, request, outcome), indent=2)
