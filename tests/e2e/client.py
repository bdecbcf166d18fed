"""A dnspython client for end-to-end tests."""

from __future__ import annotations

import socket
import struct

import dns.message
import dns.query


def ask(server, name: str, rdtype: str = "A", *, tcp: bool = False, edns: int = -1,
        payload: int = 1232, want_dnssec: bool = False, timeout: float = 5.0,
        flags: int | None = None) -> dns.message.Message:
    """Query server (anything with .host and .port) and return the parsed reply."""
    query = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload,
                                   want_dnssec=want_dnssec)
    if flags is not None:
        query.flags = flags
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=timeout)
    return dns.query.udp(query, server.host, port=server.port, timeout=timeout,
                         ignore_trailing=False)


def ask_raw(server, data: bytes, timeout: float = 1.0) -> bytes | None:
    """Send raw bytes over UDP; the reply bytes, or None when nothing comes back in time."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, (server.host, server.port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def tcp_frame(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def read_frame(conn: socket.socket) -> bytes:
    """One length-prefixed message (RFC 1035 §4.2.2); ConnectionError if the peer closes."""
    return _read_exactly(conn, struct.unpack("!H", _read_exactly(conn, 2))[0])


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    return data


def addresses(message: dns.message.Message) -> list[str]:
    return [rdata.address for rrset in message.answer if rrset.rdtype in (1, 28)
            for rdata in rrset]
