"""The admin HTTP listener: /metrics, /health, /ready, /cache, /cache/flush.

A deliberately small HTTP/1.1 server on the DNS server's own event loop: one request per
connection, a bounded and timed request head, `Connection: close`. It is meant for
loopback (Prometheus, health checks, the consuldns CLI), not for the open internet.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from consuldns import address
from consuldns.consul.ready import agent_ready
from consuldns.dns import wire
from consuldns.ops import cacheview, metrics

log = logging.getLogger("consuldns.admin")

HEAD_LIMIT = 16384
REQUEST_TIMEOUT = 5.0
BODY_LIMIT = 65536
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error", 503: "Service Unavailable"}
INDEX = ("consuldns admin: GET /metrics, /health, /ready, /cache?name=NAME&type=TYPE; "
         "POST /cache/flush[?name=NAME]\n")


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
    """Serves the admin endpoints for one Runtime (read live, so reloads show at once)."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.registry = metrics.registry_for(runtime)
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> bool:
        """Listen; on failure log why and return False (DNS keeps serving without it)."""
        try:
            self._server = await asyncio.start_server(self._serve, host, port, limit=HEAD_LIMIT)
        except OSError as exc:
            log.error("admin listener %s:%d not started: %s; DNS service continues without "
                      "/metrics, /health and /ready", host, port, exc.strerror or exc)
            return False
        log.info("admin listener on http://%s/ (/metrics /health /ready /cache)",
                 address.show(host, port))
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    method, target = await _read_request(reader)
                response = await self.dispatch(method, target)
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

    async def dispatch(self, method: str, target: str) -> Response:
        """The response to one request."""
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
        return await endpoint(params)

    async def _index(self, params: dict) -> Response:
        return Response.text(200, INDEX)

    async def _metrics(self, params: dict) -> Response:
        return Response(200, metrics.exposition(self.registry), metrics.CONTENT_TYPE)

    async def _health(self, params: dict) -> Response:
        return Response.text(200, "ok\n")

    async def _ready(self, params: dict) -> Response:
        route = self.runtime.router.route(wire.text_to_name(self.runtime.settings.consul.domain))
        ready, detail = await agent_ready(route.group, route.zone)
        return Response.text(200 if ready else 503, f"{'ready' if ready else 'not ready'}: "
                                                     f"{detail}; "
                                                     f"{self.runtime.watcher.status()}\n")

    async def _cache(self, params: dict) -> Response:
        try:
            qname, qtype = cacheview.parse_question(params.get("name", ""),
                                                    params.get("type", "A"))
        except ValueError as exc:
            return Response.json(400, {"error": str(exc)})
        do = params.get("do", "0") in ("1", "true", "yes")
        return Response.json(200, cacheview.lookup(self.runtime.handler, qname, qtype, do))

    async def _flush(self, params: dict) -> Response:
        try:
            result = cacheview.flush(self.runtime.handler, params.get("name"))
        except ValueError as exc:
            return Response.json(400, {"error": str(exc)})
        log.info("cache flush (%s): %d entries dropped", result["name"] or "everything",
                 result["flushed"])
        return Response.json(200, result)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Method and target of one request; its body (if any) is read and ignored."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"unsupported version {version!r}")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if not 0 <= length <= BODY_LIMIT:
        raise ValueError("body too large")
    if length:
        await reader.readexactly(length)
    return method, target
