"""A dnspython client for end-to-end tests."""

from __future__ import annotations

import socket
import struct
import urllib.error
import urllib.request

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


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None
         ) -> tuple[int, str]:
    """(status, body) of one request to the admin listener; POSTs carry the header that
    mutations need (ops/admin.MUTATION_HEADER) unless `headers` is given."""
    if headers is None:
        headers = {"X-Consuldns-Admin": "1"} if method == "POST" else {}
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(server) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = http(server.admin_url + "/metrics")
    assert status == 200, text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)
