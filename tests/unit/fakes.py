"""Fakes at the seams the code uses: a clock, an upstream group, a transport, a UDP socket.

They let the handler, the upstream group, the coalescer and the UDP loop be tested in
milliseconds inside one event loop, without processes or sockets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from consuldns.dns import wire
from consuldns.errors import UpstreamError
from consuldns.upstream.transport import Answer, Question, Server


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0):
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


Reply = bytes | BaseException | Callable[[Question], bytes]


class FakeGroup:
    """An upstream group whose answers the test scripts per question name (text, lowercase).

    `replies[name]` is reply bytes, an exception to raise, or a function of the question.
    While `gate` is set (an asyncio.Event), every exchange waits for it: that is how a test
    holds exchanges open to see who joins them.
    """

    def __init__(self, name: str = "default", replies: dict[str, Reply] | None = None):
        self.name = name
        self.servers = [Server("192.0.2.53", 53)]
        self.replies: dict[str, Reply] = replies or {}
        self.asked: list[Question] = []
        self.deadlines: list[float] = []
        self.gate: asyncio.Event | None = None

    async def resolve(self, question: Question, deadline: float, late=None) -> Answer:
        self.asked.append(question)
        self.deadlines.append(deadline)
        if self.gate is not None:
            await self.gate.wait()
        scripted = self.replies.get(wire.name_to_text(question.qname).lower())
        if scripted is None:
            raise UpstreamError("no reply scripted", wire.SERVFAIL)
        if isinstance(scripted, BaseException):
            raise scripted
        raw = scripted(question) if callable(scripted) else scripted
        return Answer(wire.parse_reply(raw), raw, self.servers[0], "udp", 0.001)

    def names_asked(self) -> list[str]:
        return [wire.name_to_text(q.qname).lower() for q in self.asked]


class FakeSocket:
    """A non-blocking UDP socket: recvfrom() serves the queued datagrams, then raises
    BlockingIOError; sendto() records what was sent (or raises `send_error`)."""

    def __init__(self, datagrams: list[tuple[bytes, tuple[str, int]]] = ()):
        self.incoming: deque = deque(datagrams)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.send_error: OSError | None = None
        self.receive_calls = 0

    def recvfrom(self, size: int):
        self.receive_calls += 1
        if not self.incoming:
            raise BlockingIOError
        item = self.incoming.popleft()
        if isinstance(item, OSError):
            raise item
        return item

    def sendto(self, data: bytes, client) -> int:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append((data, client))
        return len(data)

    def fileno(self) -> int:
        return -1


def run(coroutine):
    """Run one test coroutine in a fresh event loop."""
    return asyncio.run(coroutine)
