"""LISTEN/REPLY over UDP: a non-blocking socket drained in batches from a reader callback.

asyncio's DatagramProtocol allocates a large buffer per datagram and costs several times more
per packet, so the socket is read directly, in batches (packetio: recvmmsg/sendmmsg when the
accelerator is built, else recvfrom/sendto). Cache hits are answered inside the callback and
leave together in one send_batch; misses go to Handler.resolve, which answers through a
callback later; the replies made later in one pass of the event loop leave together too.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from functools import partial
from typing import Any

from consuldns import packetio
from consuldns.serve.handler import Handler
from consuldns.serve.stats import Stats

log = logging.getLogger("consuldns.listener")

DATAGRAMS_PER_WAKEUP = packetio.MAX_BATCH  # bound one callback's work: TCP and timers run too


class UdpListener:
    """Serves one bound UDP socket."""

    def __init__(self, sock: socket.socket, handler: Handler, access: Any, stats: Stats,
                 packet_io: packetio.Implementation = packetio.ACTIVE):
        self.sock = sock
        self.handler = handler
        self.access = access  # anything with allows(address) -> bool (serve/access.py)
        self.stats = stats
        self.packet_io = packet_io
        self._later: list = []  # replies made later, sent together by _send_later

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self.on_readable)

    def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())

    def close(self) -> None:
        self.sock.close()

    def on_readable(self) -> None:
        # One recv_batch, then every reply given at once (hits, refusals, errors) in one
        # send_batch; misses go on to resolve. Names are bound once per wakeup: the loop runs
        # for every datagram, and a cache hit costs only a few microseconds of Python.
        sock, packet_io = self.sock, self.packet_io
        try:
            batch = packet_io.recv_batch(sock, DATAGRAMS_PER_WAKEUP)
        except OSError:
            return  # e.g. an ICMP error queued on the socket; the next wakeup reads on
        self.stats.queries["udp"] += len(batch)
        handler = self.handler
        answer_now = handler.answer_now
        allows = self.access.allows
        query_log = handler.options.query_log
        rcodes = self.stats.rcodes
        replies: list = []
        try:
            for data, client in batch:
                if not allows(client[0]):
                    reply = self._refusal(data, client)
                elif (reply := answer_now(data, False)).__class__ is bytes:
                    if query_log is not None:
                        query_log.answered(handler, client, data, reply, False)
                else:
                    handler.resolve(data, reply, False, client, partial(self.send, client))
                    continue
                if reply:
                    rcodes[reply[3] & 0x0F] += 1
                    replies.append((reply, client))
        finally:
            failures = packet_io.send_batch(sock, replies) if replies else None
            if failures:
                self._count_failures(replies, failures)

    def _refusal(self, data: bytes, client: Any) -> bytes:
        reply = self.handler.refused(data)
        query_log = self.handler.options.query_log
        if query_log is not None:
            query_log.answered(self.handler, client, data, reply, False, refused=True)
        return reply

    def send(self, client: Any, reply: bytes) -> None:
        """Send one reply made later (a miss answered when its exchange ended). Replies made
        in one pass of the event loop (every waiter of an exchange, the answers of one
        wakeup) leave together in one send_batch."""
        if not reply:
            return
        self.stats.rcodes[reply[3] & 0x0F] += 1
        later = self._later
        if not later:
            asyncio.get_running_loop().call_soon(self._send_later)
        later.append((reply, client))
        if len(later) >= packetio.MAX_BATCH:  # a full batch leaves now: no reply waits longer
            self._send_later()

    def _send_later(self) -> None:
        replies, self._later = self._later, []
        if not replies:
            return  # sent already, as a full batch
        try:
            failures = self.packet_io.send_batch(self.sock, replies)
        except OSError:
            return  # the socket was closed meanwhile (a reload removed this address)
        if failures:
            self._count_failures(replies, failures)

    def _count_failures(self, replies: list, failures: list) -> None:
        """send_batch's (index, errno) list of the replies it could not send."""
        for index, error in failures:
            if error == errno.EAGAIN:
                self.stats.dropped += 1  # the send buffer is full: the client will retry
            else:
                log.debug("send to %s failed: %s", replies[index][1], os.strerror(error))
