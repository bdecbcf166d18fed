"""Composition root: build the pipeline from settings and run the server's lifecycle.

Bind every socket, drop privileges, serve until SIGTERM/SIGINT, then stop accepting, let
in-flight queries finish (bounded) and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

from consuldns.acl import AccessList
from consuldns.cache import Cache, CachePolicy
from consuldns.config import Settings, ZoneCacheSettings, resolv_conf_servers
from consuldns.handler import Handler
from consuldns.listener import Limits, Listeners, parse_listen
from consuldns.privileges import drop_privileges
from consuldns.router import Route, Router
from consuldns.stats import Stats
from consuldns.upstream import Group, parse_server

log = logging.getLogger("consuldns")

DRAIN_TIMEOUT = 3.0


def cache_policy(zc: ZoneCacheSettings) -> CachePolicy:
    return CachePolicy(min_ttl=zc.min_ttl, max_ttl=zc.max_ttl, neg_min_ttl=zc.neg_min_ttl,
                       neg_max_ttl=zc.neg_max_ttl, servfail_ttl=zc.servfail_ttl,
                       stale_window=zc.stale_window, stale_ttl=zc.stale_ttl)


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
    agent_policy = cache_policy(settings.cache.consul)
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
        routes.append(Route(_fqdn(zone.name), group, cache_policy(zc)))
    default = Route(".", default_group, cache_policy(settings.cache.default))
    return Router(routes, default)


def _fqdn(name: str) -> str:
    return name.strip().rstrip(".").lower() + "."


@dataclass
class Runtime:
    """The live objects of one serving process."""

    settings: Settings
    stats: Stats
    cache: Cache
    handler: Handler
    listeners: Listeners


def build_runtime(settings: Settings) -> Runtime:
    stats = Stats()
    cache = Cache(settings.cache.size)
    handler = Handler(build_router(settings), cache, stats=stats, timeout=settings.server.timeout,
                      max_udp=settings.server.max_udp_size,
                      shuffle_addresses=settings.cache.shuffle,
                      shuffle_srv=settings.cache.shuffle_srv)
    limits = Limits(max_inflight=settings.server.max_inflight,
                    max_tcp_connections=settings.server.max_tcp_connections,
                    tcp_idle_timeout=settings.server.tcp_idle_timeout)
    listeners = Listeners(handler, AccessList(settings.acl.allow), limits, stats)
    return Runtime(settings, stats, cache, handler, listeners)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")


def run(settings: Settings) -> int:
    """Serve until told to stop; the process exit code."""
    configure_logging(settings.log.level)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    runner = uvloop.run if uvloop is not None else asyncio.run
    return runner(serve(settings))


async def serve(settings: Settings) -> int:
    runtime = build_runtime(settings)
    addresses = [parse_listen(text) for text in settings.server.listen]
    try:
        bound = runtime.listeners.bind(addresses, reuse_port=settings.server.workers > 1)
    except OSError as exc:
        log.error("cannot bind %s: %s", ", ".join(settings.server.listen), exc.strerror)
        return 1
    drop_privileges(settings.server.user)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runtime.listeners.start(bound)
    log.info("consuldns %s ready (pid %d)", _version(), os.getpid())
    await stop.wait()
    log.info("stopping: draining in-flight queries")
    await runtime.listeners.stop(DRAIN_TIMEOUT)
    return 0


def _version() -> str:
    from consuldns import __version__

    return __version__
