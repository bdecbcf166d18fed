"""From settings to running objects: the one wiring used by start-up and by every reload.

`wiring(settings, stats)` builds everything the serving objects read from the configuration
(routes and upstream groups, the handler's options, the access policy, the TCP limits, the
health-probe interval); `apply(runtime, wiring)` hands it to them. Start-up and SIGHUP call
the same two functions, so a setting read here takes effect on reload too, and one read
anywhere else would not (tests/unit/test_build.py holds every setting to that).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from consuldns import address
from consuldns.consul.http import endpoint
from consuldns.consul.transport import AgentTransport
from consuldns.consul.watch import WatchSettings
from consuldns.dns import wire
from consuldns.ops import logs
from consuldns.ops.config import resolv_conf_servers
from consuldns.ops.querylog import QueryLog
from consuldns.ops.settings import LogSettings, Settings, fqdn
from consuldns.serve.access import client_policy
from consuldns.serve.handler import Options
from consuldns.serve.router import Route, Router
from consuldns.serve.stats import Stats
from consuldns.serve.tcp import Limits
from consuldns.upstream.group import Group
from consuldns.upstream.transport import Transport, parse_server

log = logging.getLogger("consuldns")


@dataclass(frozen=True)
class Wiring:
    """What the serving objects of one process read from the configuration."""

    options: Options
    access: Any  # serve.access: AccessList or RateLimitedAccess
    limits: Limits
    health_interval: float
    log: LogSettings
    watch: WatchSettings

    @property
    def router(self) -> Router:
        return self.options.router


def wiring(settings: Settings, stats: Stats) -> Wiring:
    """Build every configured object from settings (no sockets are opened)."""
    server = settings.server
    options = Options(
        router=build_router(settings), max_udp=server.max_udp_size,
        max_inflight=server.max_inflight, shuffle_addresses=settings.cache.shuffle,
        shuffle_srv=settings.cache.shuffle_srv, prefetch=settings.cache.prefetch,
        chaos=server.chaos, query_log=QueryLog() if settings.log.queries else None)
    access = client_policy(settings.acl.allow, server.rate_limit, server.rate_burst, stats)
    limits = Limits(max_tcp_connections=server.max_tcp_connections,
                    tcp_idle_timeout=server.tcp_idle_timeout)
    return Wiring(options, access, limits, settings.upstream.health_interval, settings.log,
                  watch_settings(settings, options.router))


def apply(runtime: Any, wired: Wiring) -> None:
    """Point the runtime's serving objects (ops/app.Runtime) at a new wiring."""
    runtime.handler.options = wired.options
    runtime.listeners.configure(wired.access, wired.limits)
    runtime.health.interval = wired.health_interval
    logs.configure(wired.log)
    runtime.use_watch(wired.watch)


def watch_settings(settings: Settings, router: Router) -> WatchSettings:
    """The watch of the agent's HTTP API (its address and token were checked by
    ops/validate.py, with the same environment)."""
    consul = settings.consul
    point = None if consul.watch == "off" else endpoint(
        consul.http, consul.token_file, dataclasses.asdict(consul.tls))
    domains = tuple(wire.text_to_name(name).lower()
                    for name in (consul.domain, consul.alt_domain) if name)
    zones = tuple(route.zone for route in router.routes if route.is_agent)
    policy = settings.cache.consul
    return WatchSettings(point, domains, consul.max_watches, policy.watch_ttl, zones,
                         policy.watch_settle)


def build_router(settings: Settings) -> Router:
    """Routes: the Consul domain(s) and reverse zones to the agent, extra zones, the rest."""
    consul = settings.consul
    default_group = Group("default", [parse_server(s) for s in default_servers(settings)],
                          Transport(settings.upstream.edns_size),
                          policy=settings.upstream.policy, max_fails=settings.upstream.max_fails)
    agent = Group("consul", [parse_server(consul.address, 8600)],
                  AgentTransport(consul.edns_size, consul.transport, consul.udp_answer_limit))
    agent_policy = settings.cache.consul
    upstream_timeout = settings.upstream.timeout
    # By fqdn(): a [cache.zones] key matches its [[zones]] entry however either is written.
    zone_caches = {fqdn(name): policy for name, policy in settings.cache.zones.items()}
    routes = [Route(fqdn(name), agent, agent_policy, is_agent=True, timeout=consul.timeout)
              for name in (consul.domain, consul.alt_domain) if name]
    for zone in consul.reverse_zones:
        # The agent first, then the default upstreams: the upstreams' deadline in all.
        routes.append(Route(fqdn(zone), agent, agent_policy, fallback=default_group,
                            is_agent=True, timeout=upstream_timeout))
    for zone in settings.zones:
        group = Group(fqdn(zone.name), [parse_server(s) for s in zone.servers],
                      Transport(settings.upstream.edns_size), policy=zone.policy,
                      max_fails=settings.upstream.max_fails)
        policy = zone_caches.get(fqdn(zone.name), settings.cache.default)
        routes.append(Route(fqdn(zone.name), group, policy,
                            timeout=zone.timeout or upstream_timeout))
    return Router(routes, Route(".", default_group, settings.cache.default,
                                timeout=upstream_timeout))


def default_servers(settings: Settings) -> list[str]:
    """upstream.servers, else the nameservers of resolv.conf that are not consuldns itself."""
    if settings.upstream.servers:
        return list(settings.upstream.servers)
    own = [address.parse_listen(text) for text in settings.server.listen]
    servers = resolv_conf_servers(settings.upstream.resolv_conf, own)
    if not servers:
        log.warning("no upstream servers (none given and none usable in %s): names outside "
                    "the Consul domain will get SERVFAIL", settings.upstream.resolv_conf)
    return servers


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
