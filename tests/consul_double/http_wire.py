"""HTTP/1.1 on the wire as Go's net/http does it: request heads in, framed responses out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# net/http buffers this much of a handler's output; a body that fits gets Content-Length,
# a longer one is sent chunked (server.go bufferBeforeChunkingSize).
CHUNKING_THRESHOLD = 2048
MAX_HEAD_BYTES = 1 << 20  # http.DefaultMaxHeaderBytes

REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 429: "Too Many Requests", 431:
           "Request Header Fields Too Large", 500: "Internal Server Error"}

TOO_MANY_CONNECTIONS = ("Your IP is issuing too many concurrent connections, "
                        "please rate limit your calls\n")
# agent/agent.go writes this raw and closes the connection (#11030).
TOO_MANY_CONNECTIONS_RESPONSE = (
    "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
    f"Content-Length: {len(TOO_MANY_CONNECTIONS)}\r\nConnection: close\r\n\r\n"
    f"{TOO_MANY_CONNECTIONS}").encode()


class BadRequest(Exception):
    """The request head cannot be parsed; answer 400 and close, as net/http does."""


@dataclass
class Request:
    """A parsed request head; query values keep their order, repeats allowed."""

    method: str
    path: str
    query: dict[str, list[str]]
    version: str
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        """The first value of a query parameter (Go's Query().Get), None when absent."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def keep_alive(self) -> bool:
        connection = self.header("connection").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    @property
    def body_length(self) -> int:
        try:
            return int(self.header("content-length") or 0)
        except ValueError as exc:
            raise BadRequest("bad Content-Length") from exc


def parse_head(head: bytes) -> Request:
    """Request line and headers (without the final blank line)."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError as exc:
        raise BadRequest("malformed request line") from exc
    if not version.startswith("HTTP/1."):
        raise BadRequest("unsupported HTTP version")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("malformed header line")
        headers[name.lower()] = value.strip()
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    return Request(method, unquote(parts.path), query, version, headers)


def canonical_header(name: str) -> str:
    """Go's CanonicalMIMEHeaderKey: X-Consul-KnownLeader goes out as X-Consul-Knownleader."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def go_json(value: Any) -> bytes:
    """json.Marshal's bytes: compact, UTF-8, with <, >, &, U+2028/9 escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


@dataclass
class Response:
    """Status, headers (any case; canonicalised when sent) and body bytes."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(200, go_json(value), {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def text(cls, status: int, message: str) -> Response:
        return cls(status, message.encode(), {"Content-Type": "text/plain; charset=utf-8"})


def _chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"


def encode_response(response: Response, keep_alive: bool) -> bytes:
    """Status line, sorted canonical headers, Date, framing, body."""
    headers = {canonical_header(k): v for k, v in response.headers.items()}
    headers["Date"] = formatdate(usegmt=True)
    body = response.body
    if len(body) <= CHUNKING_THRESHOLD:
        headers["Content-Length"] = str(len(body))
        payload = body
    else:
        headers["Transfer-Encoding"] = "chunked"
        payload = _chunked(body)
    if not keep_alive:
        headers["Connection"] = "close"
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}"]
    lines += [f"{k}: {v}" for k, v in sorted(headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
