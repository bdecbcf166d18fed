"""The exchange of one query with one server, and how a kind of server is asked.

Every exchange uses a fresh random ID and a UDP socket connected to the server (the kernel
drops datagrams from anyone else) on a random port, carrying no other query meanwhile and at
most a few in its short life (upstream/sockets.py). A reply is accepted only with the same
ID and question. `Transport` is the strategy for plain DNS servers (UDP with EDNS, again
without EDNS after FORMERR, TCP when truncated); the Consul agent's strategy
(consul/transport.py) adds its silent-trim detection.
"""

from __future__ import annotations

import array
import asyncio
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from consuldns import address
from consuldns.dns import wire
from consuldns.errors import MalformedPacket, OutOfSockets, UpstreamError, UpstreamTimeout
from consuldns.upstream import sockets
from consuldns.upstream.sockets import Late, reply_matches


@dataclass(frozen=True, slots=True)
class Question:
    """What to ask: the name as wire bytes, type, class and the client's DO/CD bits."""

    qname: bytes
    qtype: int
    qclass: int = wire.CLASS_IN
    do: bool = False
    cd: bool = False


@dataclass(slots=True)
class Answer:
    """A validated reply, its raw bytes, who gave it and over which transport."""

    reply: wire.Reply
    raw: bytes
    server: Server
    transport: str
    elapsed: float


class Server:
    """One upstream server and its health."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.family = address.family_of(host)
        self.failures = 0  # consecutive failures
        self.down_since: float | None = None
        self.queries = 0
        self.errors = 0

    @property
    def address(self) -> str:
        return address.show(self.host, self.port)

    def __repr__(self) -> str:
        return f"Server({self.address})"


def parse_server(text: str, default_port: int = 53) -> Server:
    """HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address; ValueError when it is none."""
    host, port = address.parse(text, default_port)
    if port == 0:
        raise ValueError(f"{text!r}: port 0 is no server's port")
    return Server(host, port)


# ---------------------------------------------------------------- one exchange


async def exchange_udp(server: Server, message: bytes, qid: int, question: Question,
                       timeout: float, late: Late | None = None) -> bytes:
    """Send message over UDP and wait for a matching reply; raise on error or timeout.

    The socket comes from the server's pool (upstream/sockets.py). With `late`, a timed-out
    socket keeps listening LATE_ANSWER_GRACE seconds more and hands a matching reply that
    comes then to late(reply)."""
    channel = sockets.pool_for(server.family, server.host, server.port).take()
    try:
        data = await channel.ask(message, qid, question, timeout)
    except UpstreamTimeout:
        channel.abandon(late)
        raise
    except BaseException:
        channel.abandon(None)
        raise
    channel.finished()
    return data


async def exchange_tcp(server: Server, message: bytes, qid: int, question: Question,
                       timeout: float) -> bytes:
    """Send message over TCP (RFC 1035 §4.2.2 framing) and read the matching reply."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(wire.U16.pack(len(message)) + message)
            await writer.drain()
            while True:
                length = wire.U16.unpack(await reader.readexactly(2))[0]
                data = await reader.readexactly(length)
                if reply_matches(data, qid, question):
                    return data
        finally:
            writer.close()


_QUERY_IDS: list[int] = []
_QUERY_ID_BATCH = 2048  # one getrandom() call per 2048 IDs instead of one per query
os.register_at_fork(after_in_child=_QUERY_IDS.clear)  # workers never share a sequence


def new_query_id() -> int:
    """A random 16-bit ID from the kernel's CSPRNG (os.urandom), drawn in batches."""
    if not _QUERY_IDS:
        _QUERY_IDS.extend(array.array("H", os.urandom(2 * _QUERY_ID_BATCH)))
    return _QUERY_IDS.pop()


# ---------------------------------------------------------------- strategies

ROOT_NS = Question(b"\x00", wire.NS)


@dataclass(frozen=True)
class Transport:
    """How a plain DNS server is asked: UDP with EDNS (`edns_size`), again without EDNS when
    it answers FORMERR, and over TCP when the reply is truncated."""

    edns_size: int = 1232
    tcp_only = False

    async def ask(self, server: Server, question: Question, timeout: float,
                  now=time.monotonic, late: Callable[[Answer], None] | None = None
                  ) -> Answer:
        """One server's validated answer; UpstreamError when it gives none in `timeout`.
        `late` gets, as an Answer, a complete reply that comes within LATE_ANSWER_GRACE
        after that. Every exchange (the retry without EDNS, TCP) has an ID of its own."""
        started = now()
        deadline = started + timeout
        server.queries += 1
        edns = self.edns_size
        if self.tcp_only:
            return await self._ask_tcp(server, question, edns, deadline, started, now)
        raw = await self._ask_udp(server, question, edns, timeout, late)
        reply = parse_reply(raw, server)
        if edns and reply.rcode == wire.FORMERR and not reply.has_opt:
            # An old server that rejects EDNS (RFC 6891 §7): ask again without OPT.
            edns = 0
            raw = await self._ask_udp(server, question, 0, max(deadline - now(), 0.001), late)
            reply = parse_reply(raw, server)
        if not self._complete(reply, edns):
            return await self._ask_tcp(server, question, edns, deadline, started, now)
        return Answer(reply, raw, server, "udp", now() - started)

    def may_be_incomplete(self, reply: wire.Reply, edns: int) -> bool:
        """Could a UDP reply without TC still lack records? Plain servers set TC."""
        return False

    def _complete(self, reply: wire.Reply, edns: int) -> bool:
        """Does a UDP reply (asked with `edns`) hold the whole answer? Else TCP is asked."""
        return not reply.truncated and not self.may_be_incomplete(reply, edns)

    async def _ask_udp(self, server: Server, question: Question, edns: int, timeout: float,
                       late: Callable[[Answer], None] | None) -> bytes:
        """One UDP exchange, with a fresh ID; the raw reply."""
        qid = new_query_id()
        return await _with_oserror(exchange_udp(
            server, self.message(question, qid, edns), qid, question, timeout,
            self._complete_late(server, edns, late)))

    def _complete_late(self, server: Server, edns: int,
                       late: Callable[[Answer], None] | None) -> Late | None:
        """The callback for a reply after the deadline: a readable, complete one goes to
        `late` as an Answer."""
        if late is None:
            return None

        def complete(raw: bytes) -> None:
            try:
                reply = wire.parse_reply(raw)
            except MalformedPacket:
                return
            if self._complete(reply, edns):
                late(Answer(reply, raw, server, "udp", 0.0))

        return complete

    def probe_question(self, zone: str) -> Question:
        """What health probes ask: the root NS, which any resolver can answer (as CoreDNS
        forward does)."""
        return ROOT_NS

    async def _ask_tcp(self, server: Server, question: Question, edns: int,
                       deadline: float, started: float, now) -> Answer:
        qid = new_query_id()
        raw = await _with_oserror(exchange_tcp(
            server, self.message(question, qid, edns), qid, question,
            max(deadline - now(), 0.001)))
        reply = parse_reply(raw, server)
        if reply.truncated:  # a partial answer, with nothing left to ask it over
            raise UpstreamError(f"truncated reply over TCP from {server.address}")
        return Answer(reply, raw, server, "tcp", now() - started)

    @staticmethod
    def message(question: Question, qid: int, edns: int) -> bytes:
        return wire.build_query(qid, question.qname, question.qtype, question.qclass,
                                cd=question.cd, edns_size=edns, do=question.do)


async def ask_once(server: Server, question: Question, timeout: float) -> int:
    """One UDP exchange outside any client query (probes, readiness), with EDNS at
    Transport's default size whatever the server's transport: the reply's rcode.
    Raises UpstreamError when there is no readable reply."""
    qid = new_query_id()
    message = Transport.message(question, qid, Transport.edns_size)
    raw = await _with_oserror(exchange_udp(server, message, qid, question, timeout))
    return parse_reply(raw, server).rcode


async def _with_oserror(coroutine):
    """Turn socket errors into UpstreamError at the edge."""
    try:
        return await coroutine
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise UpstreamError(f"connection failed: {exc}") from None
    except TimeoutError:
        raise UpstreamTimeout("no reply in time") from None
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise OutOfSockets(f"cannot open a socket: {exc.strerror}") from None
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
            raise UpstreamError(f"unreachable: {exc.strerror}") from None
        raise UpstreamError(f"socket error: {exc}") from None


def parse_reply(raw: bytes, server: Server) -> wire.Reply:
    """The reply read, or UpstreamError naming the server when it cannot be trusted."""
    try:
        return wire.parse_reply(raw)
    except MalformedPacket as exc:
        raise UpstreamError(f"malformed reply from {server.address}: {exc}") from None
