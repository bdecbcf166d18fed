"""The UDP sockets upstream queries leave from: connected, pooled per server, short-lived.

Opening a socket for every query cost about 15 system calls (socket, connect, close and the
event loop's registration and removal); a pooled socket costs two per query (send, recv).
What a fresh socket per query gave is kept (docs/design.md, "Upstream client"):
- each socket is connected to one server, so the kernel drops datagrams from anyone else,
  and its port is the random ephemeral port the kernel picks at connect();
- a socket carries one query at a time: a spoofed reply must match the one ID outstanding on
  the port it hits, as with a fresh socket; a port is never shared between servers;
- a socket serves at most MAX_USES queries and is not reused MAX_AGE seconds after it was
  opened, so a port found out (on the path, or through a side channel) is worth a few
  queries at most; a socket whose query timed out or failed is never reused (it listens
  LATE_ANSWER_GRACE more for a late answer, then closes).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

from consuldns.dns import wire
from consuldns.errors import UpstreamError, UpstreamTimeout

RECEIVE_BUFFER = 65535  # upstream UDP replies can exceed what was advertised (consul#9945)
# Seconds a UDP socket keeps listening after its deadline: a slow server's answer still lands
# in the cache, so the client's retry is a hit (docs/design.md, "Upstream client").
LATE_ANSWER_GRACE = 5.0
MAX_USES = 16  # queries one socket carries, one after the other, before it is replaced
MAX_AGE = 10.0  # seconds after its opening past which a socket is not reused (idle: closed)
MAX_IDLE = 256  # idle sockets kept per server (the rest are closed)

Late = Callable[[bytes], None]  # receives a matching reply that came after the deadline


def reply_matches(data: bytes, qid: int, question: Any) -> bool:
    """Same ID, QR set and the same question (name compared case-insensitively)."""
    if len(data) < 12 or wire.U16.unpack_from(data)[0] != qid or not data[2] & 0x80:
        return False
    end = 12 + len(question.qname)
    if data[12:end].lower() != question.qname.lower():
        return False
    return data[end:end + 4] == wire.TYPE_CLASS.pack(question.qtype, question.qclass)


class Channel:
    """One connected socket and the query it carries (or none, while idle)."""

    __slots__ = ("broken", "late", "loop", "opened", "pool", "qid", "question", "sock",
                 "timer", "uses", "waiter")

    def __init__(self, pool: Pool):
        self.pool = pool
        self.loop = pool.loop
        sock = socket.socket(pool.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(pool.address)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.opened = self.loop.time()
        self.uses = 0
        self.broken = False
        self.qid = 0
        self.question: Any = None  # what a reply must answer; None: nothing expected
        self.waiter: asyncio.Future[bytes] | None = None
        self.late: Late | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.loop.add_reader(sock.fileno(), self._readable)

    def ask(self, message: bytes, qid: int, question: Any, timeout: float
            ) -> asyncio.Future[bytes]:
        """Send message; the future gets the first matching reply, or UpstreamTimeout or
        UpstreamError."""
        self.uses += 1
        self.qid, self.question = qid, question
        waiter = self.waiter = self.loop.create_future()
        self.timer = self.loop.call_later(timeout, _expire, waiter)
        self.sock.send(message)  # an OSError here: the caller abandons the socket
        return waiter

    def finished(self) -> None:
        """The query ended with its answer: back to the pool, or closed."""
        self.timer.cancel()
        self.question = self.waiter = None
        self.pool.give_back(self)

    def abandon(self, late: Late | None) -> None:
        """The query ended without its answer (timeout, error, cancelled): never reused;
        with `late`, it listens LATE_ANSWER_GRACE seconds more for the answer."""
        self.timer.cancel()
        self.waiter = None
        if late is None or self.broken:
            self.close()
            return
        self.late = late
        self.timer = self.loop.call_later(LATE_ANSWER_GRACE, self.close)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            if self.timer is not None:
                self.timer.cancel()
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    @property
    def reusable(self) -> bool:
        return (not self.broken and self.uses < MAX_USES
                and self.loop.time() - self.opened < MAX_AGE)

    def _readable(self) -> None:
        """Read up to the first matching reply, which ends the query; drop what else comes."""
        sock = self.sock
        while sock.fileno() >= 0:
            try:
                data = sock.recv(RECEIVE_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable and friends: the server is not there
                self._failed(exc)
                return
            if self.question is not None and reply_matches(data, self.qid, self.question):
                self._answered(data)
                return  # anything after it is a stray: the next wakeup drops it

    def _answered(self, data: bytes) -> None:
        waiter, late = self.waiter, self.late
        self.question = None
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(data)
        elif late is not None:
            self.close()
            late(data)

    def _failed(self, exc: OSError) -> None:
        self.broken = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            error = UpstreamError(f"receive failed: {exc.strerror or exc}")
            error.__cause__ = exc  # `consuldns query` tells "nothing listens" from the rest
            waiter.set_exception(error)
        elif waiter is None:
            self.pool.forget(self)
            self.close()


def _expire(waiter: asyncio.Future[bytes]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("no reply in time"))


class Pool:
    """The idle sockets connected to one server (host, port), most recently used last."""

    def __init__(self, sweeper: _Sweeper, family: int, address: tuple):
        self.sweeper = sweeper
        self.loop = sweeper.loop
        self.family = family
        self.address = address
        self.idle: list[Channel] = []

    def take(self) -> Channel:
        """An idle socket that may be reused, else a new one (OSError when none opens)."""
        idle = self.idle
        while idle:
            channel = idle.pop()
            if channel.reusable:
                return channel
            channel.close()
        return Channel(self)

    def give_back(self, channel: Channel) -> None:
        if channel.reusable and len(self.idle) < MAX_IDLE:
            self.idle.append(channel)
            if self.sweeper.timer is None:
                self.sweeper.wake()
        else:
            channel.close()

    def forget(self, channel: Channel) -> None:
        if channel in self.idle:
            self.idle.remove(channel)

    def sweep(self) -> None:
        """Close the idle sockets too old to be reused."""
        for channel in self.idle:
            if not channel.reusable:
                channel.close()
        self.idle = [channel for channel in self.idle if channel.sock.fileno() >= 0]


class _Sweeper:
    """The pools of one event loop and the timer that closes their aged idle sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pools: dict[tuple, Pool] = {}
        self.timer: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        self.timer = self.loop.call_later(MAX_AGE, self._sweep)

    def _sweep(self) -> None:
        self.timer = None
        for pool in self.pools.values():
            pool.sweep()
        if any(pool.idle for pool in self.pools.values()):
            self.wake()

    def close(self) -> None:
        """Close every idle socket (through the loop unless it is closed already)."""
        for pool in self.pools.values():
            for channel in pool.idle:
                if self.loop.is_closed():
                    channel.sock.close()
                else:
                    channel.close()
            pool.idle = []


_SWEEPERS: dict[int, _Sweeper] = {}  # by id() of the event loop
os.register_at_fork(after_in_child=_SWEEPERS.clear)  # a worker never shares a socket


def pool_for(family: int, host: str, port: int) -> Pool:
    """The pool of sockets to host:port in the running event loop."""
    loop = asyncio.get_running_loop()
    sweeper = _SWEEPERS.get(id(loop))
    if sweeper is None or sweeper.loop is not loop:
        sweeper = _new_sweeper(loop)
    pool = sweeper.pools.get((host, port))
    if pool is None:
        pool = sweeper.pools[(host, port)] = Pool(sweeper, family, (host, port))
    return pool


def _new_sweeper(loop: asyncio.AbstractEventLoop) -> _Sweeper:
    """The pools of a loop seen for the first time; those of loops closed since go."""
    for key, old in list(_SWEEPERS.items()):
        if old.loop.is_closed() or key == id(loop):
            old.close()
            del _SWEEPERS[key]
    sweeper = _SWEEPERS[id(loop)] = _Sweeper(loop)
    return sweeper


def close_all() -> None:
    """Close every idle socket of the running event loop (at shutdown)."""
    sweeper = _SWEEPERS.pop(id(asyncio.get_running_loop()), None)
    if sweeper is not None:
        sweeper.close()
