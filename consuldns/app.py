"""Composition root: build the pipeline from settings and run the server's lifecycle.

Bind every socket (DNS and admin), drop privileges, serve until SIGTERM/SIGINT, then stop
accepting, let in-flight queries finish (bounded) and exit 0. SIGHUP reloads the
configuration (reload.py); servers marked down are probed in the background (health.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from dataclasses import dataclass

from consuldns import __version__, ratelimit
from consuldns.admin import AdminServer
from consuldns.cache import Cache
from consuldns.config import (
    ADMIN_OFF,
    ConfigSource,
    Settings,
    resolv_conf_servers,
)
from consuldns.handler import Handler
from consuldns.health import HealthChecker, agent_ready
from consuldns.listener import Limits, Listeners, parse_listen
from consuldns.privileges import PrivilegeError, drop_privileges
from consuldns.querylog import JsonFormatter, QueryLog
from consuldns.reload import Reloader
from consuldns.router import Route, Router
from consuldns.stats import Stats
from consuldns.upstream import Group, parse_server

log = logging.getLogger("consuldns")

DRAIN_TIMEOUT = 3.0
STARTUP_AGENT_TIMEOUT = 0.5  # a silent agent delays the start by this much at most
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_router(settings: Settings) -> Router:
    """Routes: the Consul domain(s) and reverse zones to the agent, extra zones, the rest."""
    consul = settings.consul
    own = [parse_listen(text) for text in settings.server.listen]
    default_servers = list(settings.upstream.servers) or resolv_conf_servers(
        settings.upstream.resolv_conf, own)
    if not default_servers:
        log.warning("no upstream servers (none given and none usable in %s): names outside "
                    "the Consul domain will get SERVFAIL", settings.upstream.resolv_conf)
    default_group = Group("default", [parse_server(s) for s in default_servers],
                          edns_size=settings.upstream.edns_size, policy=settings.upstream.policy,
                          max_fails=settings.upstream.max_fails)
    agent = Group("consul", [parse_server(consul.address, 8600)], edns_size=consul.edns_size,
                  agent=True, agent_transport=consul.transport,
                  agent_answer_limit=consul.udp_answer_limit)
    agent_policy = settings.cache.consul
    routes = [Route(_fqdn(consul.domain), agent, agent_policy, is_agent=True)]
    if consul.alt_domain:
        routes.append(Route(_fqdn(consul.alt_domain), agent, agent_policy, is_agent=True))
    for zone in consul.reverse_zones:
        routes.append(Route(_fqdn(zone), agent, agent_policy, fallback=default_group,
                            is_agent=True))
    for zone in settings.zones:
        group = Group(_fqdn(zone.name), [parse_server(s) for s in zone.servers],
                      edns_size=settings.upstream.edns_size, policy=zone.policy,
                      max_fails=settings.upstream.max_fails)
        zc = settings.cache.zones.get(zone.name.rstrip("."), settings.cache.default)
        routes.append(Route(_fqdn(zone.name), group, zc))
    default = Route(".", default_group, settings.cache.default)
    return Router(routes, default)


def describe_routes(router: Router) -> str:
    """One line for the log: each zone and the servers its names go to."""
    parts = []
    for route in router.routes:
        servers = ", ".join(server.address for server in route.group.servers) or "none"
        kind = "agent " if route.is_agent else ""
        fallback = (" then " + ", ".join(s.address for s in route.fallback.servers)
                    if route.fallback else "")
        parts.append(f"{route.zone} -> {kind}{servers}{fallback}")
    return "; ".join(parts)


def _fqdn(name: str) -> str:
    return name.strip().rstrip(".").lower() + "."


@dataclass
class Runtime:
    """The live objects of one serving process (a reload swaps what they point to)."""

    settings: Settings
    stats: Stats
    handler: Handler
    listeners: Listeners


def build_runtime(settings: Settings) -> Runtime:
    stats = Stats()
    cache = Cache(settings.cache.size)
    handler = Handler(build_router(settings), cache, stats=stats, timeout=settings.server.timeout,
                      max_udp=settings.server.max_udp_size,
                      shuffle_addresses=settings.cache.shuffle,
                      shuffle_srv=settings.cache.shuffle_srv, prefetch=settings.cache.prefetch,
                      chaos=settings.server.chaos,
                      query_log=query_log_for(settings))
    listeners = Listeners(handler, client_policy(settings, stats), limits_for(settings), stats)
    return Runtime(settings, stats, handler, listeners)


def limits_for(settings: Settings) -> Limits:
    return Limits(max_inflight=settings.server.max_inflight,
                  max_tcp_connections=settings.server.max_tcp_connections,
                  tcp_idle_timeout=settings.server.tcp_idle_timeout)


def client_policy(settings: Settings, stats: Stats):
    """Who may ask: acl.allow, rate-limited per client when server.rate_limit is set."""
    return ratelimit.client_policy(settings.acl.allow, settings.server.rate_limit,
                                   settings.server.rate_burst, stats)


def query_log_for(settings: Settings) -> QueryLog | None:
    return QueryLog() if settings.log.queries else None


def configure_logging(settings: Settings) -> None:
    """Root logging to stderr: text, or one JSON object per line with log.format = "json"."""
    handler = logging.StreamHandler()
    if settings.log.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log.level.upper())


def tune_garbage_collector() -> None:
    """Collect the young generation every 50 000 allocations instead of every 700.

    Every query allocates short-lived objects (closures and futures on the miss path, a query
    copy per repeat) that die young anyway; with the default threshold the collector ran so
    often that it cost a third of the time of a hot TTL-0 name (measured with
    `python -m benchmarks.compare`: 44k -> 69k qps, misses +14%). What the process holds at
    start (modules, config) is frozen out of every collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def run(settings: Settings, source: ConfigSource | None = None) -> int:
    """Serve until told to stop; the process exit code."""
    tune_garbage_collector()
    configure_logging(settings)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    runner = uvloop.run if uvloop is not None else asyncio.run
    if settings.server.workers > 1:  # N processes on one port (SO_REUSEPORT), see workers.py
        from consuldns.workers import supervise

        return supervise(settings.server.workers,
                         lambda: runner(Server(settings, source or ConfigSource()).serve()))
    return runner(Server(settings, source or ConfigSource()).serve())


class Server:
    """One serving process: DNS listeners, admin listener, health probes, signals, reload."""

    # Builders the Reloader uses, reached through the server to keep reload.py free of app.py.
    build_router = staticmethod(build_router)
    configure_logging = staticmethod(configure_logging)
    describe_routes = staticmethod(describe_routes)

    def __init__(self, settings: Settings, source: ConfigSource):
        self.runtime = build_runtime(settings)
        self.admin = AdminServer(self.runtime)
        self.admin_listen = ""
        self.health = HealthChecker(lambda: self.runtime.handler.router,
                                    settings.upstream.health_interval)
        self.reloader = Reloader(self, source)
        self._reloading: asyncio.Task | None = None

    def client_policy(self, settings: Settings):
        return client_policy(settings, self.runtime.stats)

    def query_log_for(self, settings: Settings) -> QueryLog | None:
        return query_log_for(settings)

    async def serve(self) -> int:
        settings = self.runtime.settings
        addresses = [parse_listen(text) for text in settings.server.listen]
        try:
            bound = self.runtime.listeners.bind(addresses, reuse_port=settings.server.workers > 1)
        except OSError as exc:
            log.error("cannot bind %s: %s", ", ".join(settings.server.listen), exc.strerror)
            return 1
        await self.apply_admin(settings)  # before dropping privileges, like the DNS ports
        try:
            drop_privileges(settings.server.user)
        except PrivilegeError as exc:
            log.error("%s", exc)
            return 1
        stop = self._install_signals()
        self.health.start()
        await self._check_agent()  # before answering anyone: the agent sees it first
        await self.runtime.listeners.start(bound)
        log.info("consuldns %s ready (pid %d), configuration from %s; routes: %s", __version__,
                 os.getpid(), self.reloader.source.path or "built-in defaults and flags",
                 describe_routes(self.runtime.handler.router))
        await stop.wait()
        log.info("stopping: draining in-flight queries")
        self.health.stop()
        await self.admin.stop()
        await self.runtime.listeners.stop(DRAIN_TIMEOUT)
        log.info("stopped")
        return 0

    async def _check_agent(self) -> None:
        """Say at startup whether the agent answers: the first thing an operator wants to know."""
        ready, detail = await agent_ready(self.runtime.handler.router,
                                          self.runtime.settings.consul.domain,
                                          STARTUP_AGENT_TIMEOUT)
        if ready:
            log.info("%s", detail)
        else:
            log.warning("%s: names under %s. get SERVFAIL (or stale answers) until it does",
                        detail, self.runtime.settings.consul.domain.rstrip("."))

    def _install_signals(self) -> asyncio.Event:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        return stop

    def request_reload(self) -> None:
        """SIGHUP handler: one reload at a time; a signal during a reload is not lost."""
        if self._reloading is not None and not self._reloading.done():
            self._reloading.add_done_callback(lambda _: self.request_reload())
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        try:
            await self.reloader.reload()
        except Exception:
            log.exception("reload failed unexpectedly; the previous configuration stays")

    async def apply_admin(self, settings: Settings) -> None:
        """Start, move or stop the admin listener to match settings.admin.listen."""
        wanted = settings.admin.listen
        if wanted == self.admin_listen:
            return
        await self.admin.stop()
        self.admin_listen = wanted
        if wanted not in ADMIN_OFF:
            host, port = parse_listen(wanted)
            if not await self.admin.start(host, port):
                self.admin_listen = ""  # retried at the next reload
