"""FORWARD: the async client that asks upstream servers, and a group of them with failover.

Every exchange uses a fresh random ID and a fresh UDP socket (so a fresh random source
port), connected to the server so the kernel drops datagrams from anyone else. A reply is
accepted only with the same ID and question. Truncated replies are retried over TCP. One
deadline covers the whole client query; each attempt gets a share of what remains.
"""

from __future__ import annotations

import array
import asyncio
import errno
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass

from consuldns import wire
from consuldns.errors import MalformedPacket, UpstreamError, UpstreamTimeout

log = logging.getLogger("consuldns.upstream")

RECEIVE_BUFFER = 65535  # upstream UDP replies can exceed what was advertised (consul#9945)
FAILOVER_RCODES = frozenset({wire.SERVFAIL, wire.REFUSED, wire.FORMERR, wire.NOTIMP})


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
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.failures = 0  # consecutive failures
        self.down_since: float | None = None
        self.queries = 0
        self.errors = 0

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"Server({self.address})"

    async def exchange_udp(self, message: bytes, qid: int, question: Question,
                           timeout: float) -> bytes:
        """Send message over UDP and wait for a matching reply; raise on error or timeout."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        waiter: asyncio.Future[bytes] = loop.create_future()
        try:
            sock.connect((self.host, self.port))
            sock.send(message)
            loop.add_reader(sock.fileno(), _read_matching, sock, qid, question, waiter)
            timer = loop.call_later(timeout, _expire, waiter)
            try:
                return await waiter
            finally:
                timer.cancel()
                loop.remove_reader(sock.fileno())
        finally:
            sock.close()

    async def exchange_tcp(self, message: bytes, qid: int, question: Question,
                           timeout: float) -> bytes:
        """Send message over TCP (RFC 1035 §4.2.2 framing) and read the matching reply."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port)
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


def _read_matching(sock: socket.socket, qid: int, question: Question,
                   waiter: asyncio.Future[bytes]) -> None:
    """Reader callback: drain the socket, resolve the waiter with the first matching reply."""
    while not waiter.done():
        try:
            data = sock.recv(RECEIVE_BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # ICMP port unreachable and friends: the server is not there
            waiter.set_exception(UpstreamError(f"receive failed: {exc.strerror or exc}"))
            return
        if reply_matches(data, qid, question):
            waiter.set_result(data)


def _expire(waiter: asyncio.Future[bytes]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("no reply in time"))


def reply_matches(data: bytes, qid: int, question: Question) -> bool:
    """Same ID, QR set and the same question (name compared case-insensitively)."""
    if len(data) < 12 or wire.U16.unpack_from(data)[0] != qid or not data[2] & 0x80:
        return False
    end = 12 + len(question.qname)
    if data[12:end].lower() != question.qname.lower():
        return False
    return data[end:end + 4] == wire.TYPE_CLASS.pack(question.qtype, question.qclass)


_QUERY_IDS: list[int] = []
_QUERY_ID_BATCH = 2048  # one getrandom() call per 2048 IDs instead of one per query
os.register_at_fork(after_in_child=_QUERY_IDS.clear)  # workers never share a sequence


def new_query_id() -> int:
    """A random 16-bit ID from the kernel's CSPRNG (os.urandom), drawn in batches."""
    if not _QUERY_IDS:
        _QUERY_IDS.extend(array.array("H", os.urandom(2 * _QUERY_ID_BATCH)))
    return _QUERY_IDS.pop()


class Group:
    """Servers that answer the same names, with a selection policy and failover."""

    def __init__(self, name: str, servers: list[Server], *, edns_size: int = 1232,
                 policy: str = "sequential", agent: bool = False, agent_transport: str = "auto",
                 agent_answer_limit: int = 3, max_fails: int = 3, now=time.monotonic):
        self.name = name
        self.servers = servers
        self.edns_size = edns_size
        self.policy = policy
        self.agent = agent
        self.agent_transport = agent_transport
        self.agent_answer_limit = agent_answer_limit
        self.max_fails = max_fails
        self.now = now
        self._next = 0

    def order(self) -> list[Server]:
        """Servers in the order to try: by policy, with servers marked down last."""
        servers = list(self.servers)
        if self.policy == "random" and len(servers) > 1:
            servers.sort(key=lambda _: secrets.randbits(16))
        elif self.policy == "round_robin" and len(servers) > 1:
            self._next = (self._next + 1) % len(servers)
            servers = servers[self._next:] + servers[:self._next]
        return sorted(servers, key=lambda s: s.down_since is not None)

    async def resolve(self, question: Question, deadline: float) -> Answer:
        """Ask the servers in turn until one answers usefully; raise UpstreamError if none does."""
        servers = self.order()
        last_error: UpstreamError = UpstreamError("no upstream servers configured")
        for index, server in enumerate(servers):
            remaining = deadline - self.now()
            if remaining <= 0:
                break
            share = remaining / (len(servers) - index)
            try:
                answer = await self._ask(server, question, share)
            except UpstreamError as exc:
                self._failed(server)
                last_error = exc
                continue
            if answer.reply.rcode in FAILOVER_RCODES:
                self._failed(server)
                last_error = UpstreamError(
                    f"{server.address} answered rcode {answer.reply.rcode}", answer.reply.rcode)
                continue
            self._succeeded(server)
            return answer
        if self.now() >= deadline and last_error.rcode is None:
            raise UpstreamTimeout(f"{self.name}: no answer before the deadline ({last_error})")
        raise last_error

    async def _ask(self, server: Server, question: Question, timeout: float) -> Answer:
        started = self.now()
        deadline = started + timeout
        server.queries += 1
        qid = new_query_id()
        edns = self.edns_size
        if self.agent and self.agent_transport == "tcp":
            return await self._ask_tcp(server, question, qid, edns, deadline, started)
        message = self._message(question, qid, edns)
        raw = await _with_oserror(server.exchange_udp(message, qid, question, timeout))
        reply = _parse(raw, server)
        if edns and reply.rcode == wire.FORMERR and not reply.has_opt:
            # An old server that rejects EDNS (RFC 6891 §7): ask again without OPT.
            edns = 0
            message = self._message(question, qid, 0)
            raw = await _with_oserror(server.exchange_udp(
                message, qid, question, max(deadline - self.now(), 0.001)))
            reply = _parse(raw, server)
        if reply.truncated or self._agent_may_have_trimmed(reply, edns):
            return await self._ask_tcp(server, question, new_query_id(), edns, deadline, started)
        return Answer(reply, raw, server, "udp", self.now() - started)

    async def _ask_tcp(self, server: Server, question: Question, qid: int, edns: int,
                       deadline: float, started: float) -> Answer:
        message = self._message(question, qid, edns)
        raw = await _with_oserror(server.exchange_tcp(
            message, qid, question, max(deadline - self.now(), 0.001)))
        return Answer(_parse(raw, server), raw, server, "tcp", self.now() - started)

    def _message(self, question: Question, qid: int, edns: int) -> bytes:
        return wire.build_query(qid, question.qname, question.qtype, question.qclass,
                                cd=question.cd, edns_size=edns, do=question.do)

    def _agent_may_have_trimmed(self, reply: wire.Reply, edns: int) -> bool:
        """Auto mode: could the agent have dropped records without setting TC?

        Consul trims UDP answers silently. An agent that ignored our EDNS (no OPT in the
        reply, as 0.6.4 does) trims to udp_answer_limit records and 512 bytes; one that
        honoured it trims to our buffer size. A reply at either limit may be incomplete, so
        it is asked again over TCP, which Consul never trims short of 64 KB.
        """
        if not self.agent or self.agent_transport != "auto" or reply.rcode != wire.NOERROR:
            return False
        answers = sum(1 for r in reply.records if r.section == 0)
        if not reply.has_opt:
            return answers >= self.agent_answer_limit or reply.size > 512 - 64
        return reply.size > edns - 128

    def _failed(self, server: Server) -> None:
        server.errors += 1
        server.failures += 1
        if server.failures >= self.max_fails and server.down_since is None:
            server.down_since = self.now()
            log.warning("upstream %s marked down after %d failures", server.address,
                        server.failures)

    def _succeeded(self, server: Server) -> None:
        if server.down_since is not None:
            log.warning("upstream %s is answering again", server.address)
        server.failures = 0
        server.down_since = None


async def _with_oserror(coroutine):
    """Turn socket errors into UpstreamError at the edge."""
    try:
        return await coroutine
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise UpstreamError(f"connection failed: {exc}") from None
    except TimeoutError:
        raise UpstreamTimeout("no reply in time") from None
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
            raise UpstreamError(f"unreachable: {exc.strerror}") from None
        raise UpstreamError(f"socket error: {exc}") from None


def _parse(raw: bytes, server: Server) -> wire.Reply:
    try:
        return wire.parse_reply(raw)
    except MalformedPacket as exc:
        raise UpstreamError(f"malformed reply from {server.address}: {exc}") from None


def parse_server(text: str, default_port: int = 53) -> Server:
    """HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    else:
        host, port = text, default_port
    socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return Server(host, port)
