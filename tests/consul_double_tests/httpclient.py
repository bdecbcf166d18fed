"""Small stdlib HTTP helpers for the double's agent API: GET, blocking GET in a thread, raw."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

TIMEOUT = 10.0


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage  # case-insensitive lookups
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def index(self) -> int:
        return int(self.headers["X-Consul-Index"])


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket path."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def connection(double, timeout: float = TIMEOUT) -> http.client.HTTPConnection:
    if double.http_port is None:
        return UnixHTTPConnection(double.http_unix, timeout)
    return http.client.HTTPConnection(double.http_host, double.http_port, timeout=timeout)


def request(conn: http.client.HTTPConnection, path: str, token: str | None = None,
            headers: dict[str, str] | None = None) -> Reply:
    """One GET on an open connection (kept open for the next one)."""
    sent = dict(headers or {})
    if token is not None:
        sent["X-Consul-Token"] = token
    start = time.monotonic()
    conn.request("GET", path, headers=sent)
    response = conn.getresponse()
    body = response.read()
    return Reply(response.status, response.headers, body, time.monotonic() - start)


def get(double, path: str, token: str | None = None, headers: dict[str, str] | None = None,
        timeout: float = TIMEOUT) -> Reply:
    """GET path on its own connection."""
    conn = connection(double, timeout)
    try:
        return request(conn, path, token, headers)
    finally:
        conn.close()


_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="http-test")


def get_later(double, path: str, **kwargs: Any) -> Future:
    """Start a GET (typically a blocking query) in a thread; .result() is its Reply."""
    return _pool.submit(get, double, path, **kwargs)


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll condition() until it returns something true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def held(double, path: str | None = None) -> int:
    """Blocking queries the double is holding now (for path, or in total)."""
    counters = double.control.http_counters()
    return counters.held.get(path, 0) if path else counters.held_total


def watch(double, path: str, index: int, wait: str = "5s", **kwargs: Any) -> Future:
    """A blocking query on path with index and wait, returned once the double holds it."""
    separator = "&" if "?" in path else "?"
    before = held(double, path.split("?")[0])
    future = get_later(double, f"{path}{separator}index={index}&wait={wait}", **kwargs)
    wait_until(lambda: held(double, path.split("?")[0]) > before or future.done())
    return future


def raw_exchange(double, data: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send raw bytes, read until the double closes the connection."""
    with socket.create_connection((double.http_host, double.http_port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
