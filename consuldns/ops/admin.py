"""The admin HTTP listener: /metrics, /health, /ready, /cache, /cache/flush.

A deliberately small HTTP/1.1 server on the DNS server's own event loop: one request per
connection, a bounded and timed request head, `Connection: close`. It is meant for
loopback (Prometheus, health checks, the consuldns CLI), not for the open internet, and it
must not cost the DNS service its file descriptors: at most MAX_CONNECTIONS are open at once
(more are closed at once) and a request head must arrive within REQUEST_TIMEOUT.

Browsers are kept out (DNS rebinding, cross-site forms): a request with an Origin header,
or with a Host that is not this listener's address, is refused, and a POST needs the
MUTATION_HEADER, which a page cannot send cross-site without a CORS preflight (never granted).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from consuldns import address
from consuldns.ops import cacheview, fleet, metrics
from consuldns.ops.fleet import MUTATION_HEADER, Fleet

log = logging.getLogger("consuldns.admin")

HEAD_LIMIT = 16384
REQUEST_TIMEOUT = 2.0
BODY_LIMIT = 65536
MAX_CONNECTIONS = 16
FLEET_PATHS = ("/metrics", "/cache", "/cache/flush")  # answered for every worker
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}
INDEX = ("consuldns admin: GET /metrics, /health, /ready, /cache?name=NAME&type=TYPE; "
         f"POST /cache/flush[?name=NAME] with a {MUTATION_HEADER} header\n")


@dataclass
class Request:
    """What the admin listener reads of a request: method, target and headers (lowercase)."""

    method: str
    target: str
    headers: dict[str, str]


class Gate:
    """Who may use one listener: how many connections at once, and with which Host. The
    public listener is on host:port; a worker's private unix socket has no host."""

    def __init__(self, host: str | None = None, port: int = 0):
        self.open = 0
        self.hosts = None if host is None else accepted_hosts(host, port)
        self.any_ip_port = port if host is not None and address.is_wildcard(host) else None

    @property
    def public(self) -> bool:
        """The listener on host:port (not a worker's private socket)."""
        return self.hosts is not None

    def refusal(self, request: Request) -> str | None:
        """Why the request is refused, or None."""
        if "origin" in request.headers:
            return "cross-site requests are refused (the request has an Origin header)"
        host = request.headers.get("host")
        if self.hosts is not None and host is not None and not self._host_ok(host.lower()):
            return f"Host {host!r} is not this listener's address"
        if request.method == "POST" and MUTATION_HEADER.lower() not in request.headers:
            return f"a POST needs a {MUTATION_HEADER} header (e.g. curl -X POST -H " \
                   f"'{MUTATION_HEADER}: 1' URL)"
        return None

    def _host_ok(self, host: str) -> bool:
        if host in self.hosts:
            return True
        try:  # a wildcard listener: any IP address of the host, never a name (rebinding)
            return self.any_ip_port is not None and address.parse(host)[1] == self.any_ip_port
        except ValueError:
            return False


def accepted_hosts(host: str, port: int) -> set[str]:
    """The Host header values naming a listener on host:port (loopback: its usual names)."""
    hosts = {address.show(host, port)}
    if address.is_wildcard(host) or ipaddress.ip_address(host).is_loopback:
        hosts |= {f"localhost:{port}", address.show("127.0.0.1", port), address.show("::1", port)}
    return hosts


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, text.encode())

    @classmethod
    def json(cls, status: int, document: dict) -> Response:
        return cls(status, (json.dumps(document) + "\n").encode(), "application/json")

    def encode(self) -> bytes:
        head = (f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}\r\n"
                f"Content-Type: {self.content_type}\r\n"
                f"Content-Length: {len(self.body)}\r\n"
                "Connection: close\r\n\r\n")
        return head.encode("latin-1") + self.body


class AdminServer:
    """Serves the admin endpoints for one Runtime (read live, so reloads show at once). With
    a fleet (the worker in slot 0 of several), the public listener answers for them all."""

    def __init__(self, runtime, fleet: Fleet | None = None) -> None:
        self.runtime = runtime
        self.fleet = fleet
        self.registry = metrics.registry_for(runtime)
        self._server: asyncio.Server | None = None
        self._private: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> bool:
        """Listen; on failure log why and return False (DNS keeps serving without it)."""
        try:
            self._server = await asyncio.start_server(partial(self._serve, Gate(host, port)),
                                                      host, port, limit=HEAD_LIMIT)
        except OSError as exc:
            log.error("admin listener %s not started: %s; DNS service continues without "
                      "/metrics, /health and /ready", address.show(host, port),
                      exc.strerror or exc)
            return False
        log.info("admin listener on http://%s/ (/metrics /health /ready /cache)",
                 address.show(host, port))
        return True

    async def start_private(self, path: Path) -> bool:
        """Serve this worker's own endpoints on a unix socket (workers = N)."""
        try:
            path.unlink(missing_ok=True)  # left by the worker this one replaces
            self._private = await asyncio.start_unix_server(partial(self._serve, Gate()),
                                                            str(path), limit=HEAD_LIMIT)
        except OSError as exc:
            log.warning("admin socket %s not started: %s; /metrics and /cache/flush on the "
                        "admin port leave this worker out", path, exc.strerror or exc)
            return False
        return True

    async def stop(self) -> None:
        """Stop the public listener (a reload may start it elsewhere)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def stop_all(self) -> None:
        """Stop every listener (shutdown)."""
        await self.stop()
        if self._private is not None:
            self._private.close()
            self._private = None

    async def _serve(self, gate: Gate, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        if gate.open >= MAX_CONNECTIONS:
            writer.transport.abort()  # its descriptor back at once: DNS needs them more
            return
        gate.open += 1
        try:
            await self._answer(gate, reader, writer)
        finally:
            gate.open -= 1

    async def _answer(self, gate: Gate, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    request = await _read_request(reader)
                refusal = gate.refusal(request)
                if refusal is not None:
                    response = Response.text(403, refusal + "\n")
                else:
                    everyone = gate.public and self.fleet is not None
                    response = await self.dispatch(request.method, request.target, everyone)
            except (ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                response = Response.text(400, "bad request\n")
            except TimeoutError:
                return
            except Exception:
                log.exception("admin request failed")
                response = Response.text(500, "internal error\n")
            writer.write(response.encode())
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def dispatch(self, method: str, target: str, everyone: bool = False) -> Response:
        """The response to one request; for every worker when `everyone` (ops/fleet.py)."""
        url = urlsplit(target)
        params = {key: values[-1] for key, values in parse_qs(url.query).items()}
        routes = {
            "/": ("GET", self._index), "/metrics": ("GET", self._metrics),
            "/health": ("GET", self._health), "/ready": ("GET", self._ready),
            "/cache": ("GET", self._cache), "/cache/flush": ("POST", self._flush),
        }
        if url.path not in routes:
            return Response.text(404, f"no such endpoint {url.path}\n{INDEX}")
        allowed, endpoint = routes[url.path]
        if method != allowed:
            return Response.text(405, f"{url.path} takes {allowed}\n")
        if everyone and url.path in FLEET_PATHS:
            return await self._for_everyone(url.path, method, target)
        return await endpoint(params)

    async def _for_everyone(self, path: str, method: str, target: str) -> Response:
        """Ask every worker on its private socket and merge their answers."""
        replies = await self.fleet.ask_all(method, target)
        failed = next((r for r in replies if r is not None and r[0] != 200), None)
        if failed is not None:  # a bad name: every worker says the same
            return Response(failed[0], failed[1], "application/json")
        bodies, missing = fleet.answered(replies), fleet.missing(replies)
        if path == "/metrics":
            return Response(200, fleet.merge_metrics(bodies), metrics.CONTENT_TYPE)
        if not bodies:
            return Response.json(503, {"error": "no worker answered"})
        if path == "/cache":
            return Response.json(200, fleet.merge_lookup(fleet.documents(replies)))
        result = fleet.merge_flush(bodies, len(replies))
        if missing:
            result["error"] = (f"worker(s) {', '.join(map(str, missing))} did not answer: "
                               "their caches were not flushed; try again")
            return Response.json(503, result)
        return Response.json(200, result)

    async def _index(self, params: dict) -> Response:
        return Response.text(200, INDEX)

    async def _metrics(self, params: dict) -> Response:
        return Response(200, metrics.exposition(self.registry), metrics.CONTENT_TYPE)

    async def _health(self, params: dict) -> Response:
        return Response.text(200, "ok\n")

    async def _ready(self, params: dict) -> Response:
        ready, detail = await self.runtime.agent_answers()
        state = "ready" if ready else "not ready"
        return Response.text(200 if ready else 503,
                             f"{state}: {detail}; {self.runtime.watcher.status()}\n")

    async def _cache(self, params: dict) -> Response:
        try:
            qname, qtype = cacheview.parse_question(params.get("name", ""),
                                                    params.get("type", "A"))
        except ValueError as exc:
            return Response.json(400, {"error": str(exc)})
        do = params.get("do", "0") in ("1", "true", "yes")
        document = cacheview.lookup(self.runtime.handler, qname, qtype, do)
        watch = document.get("watch")
        if watch and watch.get("state") not in ("off", None) and "instances" not in watch:
            watch.update(await self.runtime.watcher.health_view(qname))
        return Response.json(200, document)

    async def _flush(self, params: dict) -> Response:
        try:
            result = cacheview.flush(self.runtime.handler, params.get("name"))
        except ValueError as exc:
            return Response.json(400, {"error": str(exc)})
        log.info("cache flush (%s): %d entries dropped", result["name"] or "everything",
                 result["flushed"])
        return Response.json(200, result)


async def _read_request(reader: asyncio.StreamReader) -> Request:
    """Method, target and headers of one request; its body (if any) is read and ignored."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"unsupported version {version!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if not 0 <= length <= BODY_LIMIT:
        raise ValueError("body too large")
    if length:
        await reader.readexactly(length)
    return Request(method, target, headers)
