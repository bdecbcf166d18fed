"""The agent HTTP endpoints the double serves, with Consul's blocking-query semantics.

A read with index=N > 0 holds until the view's index exceeds N, a snapshot restore
abandons the store (agent/blockingquery/blockingquery.go Query), the servers become
unreachable, or wait + jitter passes; a timeout answers the same index and body.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from . import acl
from .gotime import format_go_duration
from .health import Instance
from .http_json import catalog_services_body, health_body
from .http_query import ApiError, ChangeFeed, QueryOptions, parse_options, query_timeout
from .http_wire import Request, Response
from .state import DoubleState, HttpView

NO_SERVERS = "No known Consul servers"  # structs.ErrNoServers
NO_LEADER = "No cluster leader"  # structs.ErrNoLeader
NO_DC_PATH = "No path to datacenter"  # structs.ErrNoDCPath
HEALTH_PREFIXES = {"/v1/health/service/": "service", "/v1/health/connect/": "connect",
                   "/v1/health/ingress/": "ingress"}
STREAMING_KINDS = ("service", "connect")  # /health/ingress never streams

Answer = Callable[[HttpView, acl.Reader], tuple[int, Any, dict[str, str]]]


def _instances(view: HttpView, kind: str, dc: str, name: str) -> list[Instance]:
    snap = view.snapshot
    if kind == "ingress":
        return snap.ingress_instances(dc, name)
    instances = snap.service_instances(dc, name, "")
    return [i for i in instances if i.service.connect] if kind == "connect" else instances


def _passing_param(request: Request) -> bool:
    value = request.param("passing")
    if value is None:
        return False
    if value in ("", "1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ApiError(400, "Invalid value for ?passing")


def _query_filters(instances: list[Instance], request: Request) -> list[Instance]:
    """?tag (every one, any case) and ?passing: applied after the index, like the agent."""
    tags = [t.lower() for t in request.query.get("tag", [])]
    if tags:
        instances = [i for i in instances
                     if all(t in {s.lower() for s in i.service.tags} for t in tags)]
    if _passing_param(request):
        instances = [i for i in instances if all(c.status == "passing" for c in i.checks)]
    return instances


class HttpApi:
    """Routes requests to endpoints; answers are built from the state's HTTP view."""

    def __init__(self, state: DoubleState, feed: ChangeFeed,
                 rng: random.Random | None = None) -> None:
        self.state = state
        self.feed = feed
        self.rng = rng or random.Random()

    async def handle(self, request: Request) -> tuple[str, Response]:
        """(endpoint name for the counters, response)."""
        endpoint, handler = self._route(request.path)
        if handler is None:
            return endpoint, Response(404)
        if request.method != "GET":
            return endpoint, Response.text(405, f"method {request.method} not allowed")
        try:
            response = await handler(request)
        except ApiError as exc:
            response = Response.text(exc.status, exc.message)
        except acl.AclNotFound as exc:
            response = Response.text(403, str(exc))
        response.headers["Vary"] = "Accept-Encoding"
        return endpoint, response

    def _route(self, path: str) -> tuple[str, Callable | None]:
        for prefix, kind in HEALTH_PREFIXES.items():
            if path.startswith(prefix):
                return f"health_{kind}", partial(self._health, kind=kind,
                                                 name=path[len(prefix):])
        fixed = {"/v1/catalog/services": ("catalog_services", self._catalog_services),
                 "/v1/status/leader": ("status_leader", self._status_leader),
                 "/v1/agent/self": ("agent_self", self._agent_self)}
        return fixed.get(path, ("not_found", None))

    # -- endpoints --

    async def _health(self, request: Request, kind: str, name: str) -> Response:
        options = parse_options(request, self.state.snapshot.config.datacenter)
        if not name:
            raise ApiError(400, "Missing service name")

        peer = bool(request.param("peer"))  # no peerings: nothing imported from any peer

        def answer(view: HttpView, reader: acl.Reader) -> tuple[int, Any, dict[str, str]]:
            instances = [] if peer else _instances(view, kind, options.dc, name)
            index = view.indexes.view(kind, options.dc, name, exists=bool(instances))
            readable = [i for i in instances if reader.can_read(name)
                        and reader.can_read(i.service.name)]
            headers = {}
            if len(readable) < len(instances) and not reader.anonymous:
                headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
            visible = _query_filters(readable, request)
            return index, health_body(visible, view.indexes), headers

        return await self._read(request, options, answer, streams=kind in STREAMING_KINDS)

    async def _catalog_services(self, request: Request) -> Response:
        options = parse_options(request, self.state.snapshot.config.datacenter)

        def answer(view: HttpView, reader: acl.Reader) -> tuple[int, Any, dict[str, str]]:
            dc = options.dc
            services = [i.service for (d, _), found in view.snapshot.instances.items()
                        if d == dc for i in found if reader.can_read(i.service.name)]
            return view.indexes.services(dc), catalog_services_body(services), {}

        return await self._read(request, options, answer, streams=False)

    async def _status_leader(self, request: Request) -> Response:
        faults = self.state.faults
        if faults.servfail is not None:  # an RPC to a server, even here
            await asyncio.sleep(faults.servfail)
            raise ApiError(500, NO_SERVERS)
        return Response.json("" if faults.no_leader is not None else self.state.http_config.leader)

    async def _agent_self(self, request: Request) -> Response:
        config, http = self.state.snapshot.config, self.state.http_config
        acl.resolve(http, request)
        debug = {"Datacenter": config.datacenter, "NodeName": http.node_name,
                 "HTTPMaxConnsPerClient": http.max_conns_per_client, "HTTPUseCache": True,
                 "UseStreamingBackend": http.use_streaming_backend,
                 "CheckUpdateInterval": format_go_duration(http.check_update_interval),
                 "DNSAllowStale": True, "DNSMaxStale": "87600h0m0s", "DNSUseCache": False,
                 "DNSOnlyPassing": config.only_passing,
                 "DNSNodeTTL": format_go_duration(config.node_ttl)}
        return Response.json({"Config": {"Datacenter": config.datacenter,
                                         "NodeName": http.node_name, "Server": False},
                              "DebugConfig": debug})

    # -- the read path shared by blocking endpoints --

    def _unavailable(self, options: QueryOptions, streaming: bool) -> tuple[float, ApiError] | None:
        """(delay, error) when the servers cannot answer this read; the view answers streams."""
        faults = self.state.faults
        if streaming:
            return None
        if faults.servfail is not None:
            return faults.servfail, ApiError(500, NO_SERVERS)
        if faults.no_leader is not None and options.consistency != "stale":
            return faults.no_leader, ApiError(500, NO_LEADER)
        return None

    def _view(self, streaming: bool) -> HttpView:
        """Streaming with lost servers: the agent's materialized view, frozen at the loss."""
        frozen = self.state.frozen_http_view
        return frozen if streaming and frozen is not None else self.state.http_view

    def _meta(self, index: int, options: QueryOptions, streaming: bool) -> dict[str, str]:
        headers = {"X-Consul-Index": str(index),
                   "X-Consul-Effective-Consistency": options.consistency,
                   "X-Consul-Query-Backend": "streaming" if streaming else "blocking-query"}
        if not streaming:
            leaderless = self.state.faults.no_leader is not None
            since = time.monotonic() - self.state.no_leader_since if leaderless else 0.0
            headers["X-Consul-KnownLeader"] = "false" if leaderless else "true"
            headers["X-Consul-LastContact"] = str(int(since * 1000))
        return headers

    async def _read(self, request: Request, options: QueryOptions, answer: Answer,
                    streams: bool) -> Response:
        streaming = streams and self.state.http_config.use_streaming_backend and options.index > 0
        unavailable = self._unavailable(options, streaming)
        if unavailable is not None:
            await asyncio.sleep(unavailable[0])
            raise unavailable[1]
        if not self.state.snapshot.knows_datacenter(options.dc):
            raise ApiError(500, NO_DC_PATH)
        reader = acl.resolve(self.state.http_config, request)
        if options.index == 0:
            return self._respond(answer, self._view(streaming), reader, options, streaming)[1]
        return await self._block(request.path, options, answer, reader, streaming)

    def _respond(self, answer: Answer, view: HttpView, reader: acl.Reader,
                 options: QueryOptions, streaming: bool) -> tuple[int, Response]:
        index, body, headers = answer(view, reader)
        headers.update(self._meta(index, options, streaming))
        return index, Response.json(body, headers)

    async def _block(self, path: str, options: QueryOptions, answer: Answer,
                     reader: acl.Reader, streaming: bool) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + query_timeout(options.wait, self.state.http_config, self.rng)
        epoch = self._view(streaming).indexes.epoch
        self.state.http_stats.hold(path, +1)
        try:
            while True:
                changed = self.feed.current()
                unavailable = self._unavailable(options, streaming)
                if unavailable is not None:
                    raise unavailable[1]  # the server connection broke: no hold-timeout wait
                view = self._view(streaming)
                index, response = self._respond(answer, view, reader, options, streaming)
                remaining = deadline - loop.time()
                if index > options.index or view.indexes.epoch != epoch or remaining <= 0:
                    return response
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            self.state.http_stats.hold(path, -1)
