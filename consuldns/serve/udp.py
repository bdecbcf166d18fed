"""LISTEN/REPLY over UDP: a non-blocking socket drained from an event-loop reader callback.

asyncio's DatagramProtocol allocates a large buffer per datagram and costs several times more
per packet, so the socket is read with recvfrom() directly. Cache hits are answered inside
the callback; misses go to Handler.resolve, which answers through a callback later.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from functools import partial
from typing import Any

from consuldns.serve.handler import Handler
from consuldns.serve.stats import Stats

log = logging.getLogger("consuldns.listener")

MAX_QUERY_SIZE = 4096  # bigger datagrams are no legitimate query
DATAGRAMS_PER_WAKEUP = 64  # bound the work of one callback so TCP and timers still run


class UdpListener:
    """Serves one bound UDP socket."""

    def __init__(self, sock: socket.socket, handler: Handler, access: Any, stats: Stats):
        self.sock = sock
        self.handler = handler
        self.access = access  # anything with allows(address) -> bool (serve/access.py)
        self.stats = stats

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self.on_readable)

    def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())

    def close(self) -> None:
        self.sock.close()

    def on_readable(self) -> None:
        # Names bound once per wakeup: this loop runs for every datagram, and a cache hit
        # costs only a few microseconds of Python besides the two system calls.
        handler = self.handler
        answer_now = handler.answer_now
        allows = self.access.allows
        receive = self.sock.recvfrom
        received = 0
        try:
            for _ in range(DATAGRAMS_PER_WAKEUP):
                try:
                    data, client = receive(MAX_QUERY_SIZE)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    continue  # e.g. an ICMP error queued on the socket
                received += 1
                if not allows(client[0]):
                    self._refuse(data, client)
                    continue
                result = answer_now(data, False)
                if result.__class__ is bytes:
                    if result:
                        self.send(client, result)
                    if handler.options.query_log is not None:
                        handler.options.query_log.answered(handler, client, data, result, False)
                else:
                    handler.resolve(data, result, False, client, partial(self.send, client))
        finally:
            self.stats.queries["udp"] += received

    def _refuse(self, data: bytes, client: Any) -> None:
        reply = self.handler.refused(data)
        self.send(client, reply)
        query_log = self.handler.options.query_log
        if query_log is not None:
            query_log.answered(self.handler, client, data, reply, False, refused=True)

    def send(self, client: Any, reply: bytes) -> None:
        if not reply:
            return
        self.stats.rcodes[reply[3] & 0x0F] += 1
        try:
            self.sock.sendto(reply, client)
        except (BlockingIOError, InterruptedError):
            self.stats.dropped += 1  # the send buffer is full: the client will retry
        except OSError as exc:
            log.debug("send to %s failed: %s", client, exc)
