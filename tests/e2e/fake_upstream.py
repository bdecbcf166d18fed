"""A scriptable upstream for tests that need to misbehave or record what it received.

Real resolvers (unbound, dnsmasq) cover honest behaviour; this one answers through a
function so a test can play a silent, slow, lying or spoofing server. UDP and TCP on one
loopback port, served from a thread.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from tests.e2e.client import read_frame
from tests.harness.ports import free_port


@dataclass
class Received:
    id: int
    port: int
    transport: str
    name: str
    rdtype: int
    has_edns: bool
    payload: int
    at: float = field(default_factory=time.monotonic)  # when it came in


# handle(query, transport) -> bytes to send, a list of them, or None for silence. Over TCP
# each message is framed, except items starting with RAW (sent as they are) and RESET.
RAW = b"RAW:"
RESET = b"RESET"
Handler = Callable[[dns.message.Message, str], "bytes | list[bytes] | None"]


def answer_a(query: dns.message.Message, addresses: list[str], ttl: int = 300) -> bytes:
    reply = dns.message.make_response(query)
    name = query.question[0].name
    if addresses:
        reply.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", *addresses))
    return reply.to_wire(max_size=65535)


def truncated(query: dns.message.Message) -> bytes:
    """An empty reply with TC set: the client must ask again over TCP."""
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.TC
    return reply.to_wire()


@dataclass
class FakeUpstream:
    handle: Handler
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    late_sent: int = 0  # replies answer_later() has sent

    def __post_init__(self) -> None:
        self.port = free_port(self.host)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((self.host, self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((self.host, self.port))
        self.tcp.listen(16)
        # Short timeouts let the serving threads notice stop(): closing a socket does not
        # wake a thread blocked on it, and the port would stay bound (and silent).
        self.udp.settimeout(0.05)
        self.tcp.settimeout(0.05)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.udp.close()
        self.tcp.close()

    def answer_later(self, delay: float, reply: bytes) -> None:
        """Send `reply` over UDP `delay` seconds from now to where the last query came from
        (a handler returns this, None: nothing goes out at once)."""
        port = self.received[-1].port
        timer = threading.Timer(delay, self._send_late, (reply, (self.host, port)))
        timer.daemon = True
        timer.start()

    def _send_late(self, reply: bytes, address: tuple[str, int]) -> None:
        try:
            self.udp.sendto(reply, address)
        except OSError:
            pass  # stopped meanwhile
        self.late_sent += 1

    def _record(self, query: dns.message.Message, port: int, transport: str) -> None:
        question = query.question[0]
        self.received.append(Received(query.id, port, transport, question.name.to_text().lower(),
                                      question.rdtype, query.edns >= 0, query.payload))

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            self._record(query, client[1], "udp")
            for reply in _as_list(self.handle(query, "udp")):
                try:
                    self.udp.sendto(reply, client)
                except OSError:
                    pass

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, client = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve_connection, args=(conn, client),
                             daemon=True).start()

    def _serve_connection(self, conn: socket.socket, client) -> None:
        with conn:
            conn.settimeout(5)
            try:
                query = dns.message.from_wire(read_frame(conn))
            except (OSError, ValueError, Exception):
                return
            self._record(query, client[1], "tcp")
            for reply in _as_list(self.handle(query, "tcp")):
                if reply == RESET:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                data = reply[len(RAW):] if reply.startswith(RAW) else frame(reply)
                try:
                    conn.sendall(data)
                except OSError:
                    return


def frame(reply: bytes) -> bytes:
    """A reply with its RFC 1035 §4.2.2 length prefix."""
    return struct.pack("!H", len(reply)) + reply


def _as_list(result) -> list[bytes]:
    if result is None:
        return []
    return result if isinstance(result, list) else [result]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
