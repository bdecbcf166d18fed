"""SIGHUP: re-read the configuration and switch to it at once, or not at all.

Order: read and validate the file, build the new router, bind the new listen addresses;
only when all of that worked is anything changed. A bad file, or an address that cannot be
bound, leaves the server exactly as it was, with the reason logged. Applying keeps the
cache of every zone whose upstreams and cache policy are unchanged and whose names still
route to it; server health and counters carry over for servers that stay.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket

from consuldns.cache import Cache
from consuldns.config import ConfigSource, Settings
from consuldns.errors import ConfigError
from consuldns.health import groups_of
from consuldns.listener import Limits, parse_listen
from consuldns.router import Route, Router

log = logging.getLogger("consuldns.reload")

Address = tuple[str, int]


def canonical(address: Address) -> Address:
    """The host as the kernel writes it back (getsockname), so addresses compare equal."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.inet_ntop(family, socket.inet_pton(family, host)), port


def listen_set(settings: Settings) -> list[Address]:
    return [canonical(parse_listen(text)) for text in settings.server.listen]


def _route_signature(route: Route) -> tuple:
    """What decides the answers cached for a zone: who is asked, how, and the cache policy."""
    def group_signature(group) -> tuple:
        if group is None:
            return ()
        return (tuple(s.address for s in group.servers), group.policy, group.edns_size,
                group.agent, group.agent_transport, group.agent_answer_limit)

    return (group_signature(route.group), group_signature(route.fallback), route.policy,
            route.is_agent)


def zones_to_flush(old: Router, new: Router, cache: Cache) -> set[str]:
    """Zones whose cached answers may now be wrong.

    A zone is flushed when it is gone, when its servers or cache policy changed, or when some
    of its cached names now route elsewhere (a zone was added under it).
    """
    new_routes = {route.zone: route for route in new.routes}
    doomed = {route.zone for route in old.routes
              if route.zone not in new_routes
              or _route_signature(route) != _route_signature(new_routes[route.zone])}
    for key, entry in cache.items():
        if entry.zone in doomed:
            continue
        qname = key[:-5]  # wire.parse_query: name, QTYPE and QCLASS, then one flag byte
        if new.route(qname).zone != entry.zone:
            doomed.add(entry.zone)
    return doomed


def carry_over_health(old: Router, new: Router, stats) -> None:
    """Servers kept in a group keep their counters, health and latency histogram."""
    previous = {(group.name, server.address): server
                for group, _, _ in groups_of(old) for server in group.servers}
    latency = {}
    for group, _, _ in groups_of(new):
        for server in group.servers:
            before = previous.get((group.name, server.address))
            if before is None:
                continue
            server.queries, server.errors = before.queries, before.errors
            server.failures, server.down_since = before.failures, before.down_since
            if before in stats.upstream_latency:
                latency[server] = stats.upstream_latency[before]
    stats.upstream_latency.clear()  # removed servers' histograms go with them
    stats.upstream_latency.update(latency)


class Reloader:
    """Applies a new configuration to a running server (see the module docstring)."""

    def __init__(self, server, source: ConfigSource):
        self.server = server  # app.Server: runtime, admin, health checker, logging
        self.source = source

    async def reload(self) -> bool:
        """One reload attempt; True when the new configuration is in effect."""
        runtime = self.server.runtime
        log.info("SIGHUP: reloading the configuration%s",
                 f" from {self.source.path}" if self.source.path else "")
        try:
            settings = self.source.load()
            router = self.server.build_router(settings)
        except ConfigError as exc:
            return self._rejected(str(exc).replace("\n", "; "))
        old_addresses, new_addresses = listen_set(runtime.settings), listen_set(settings)
        added = [a for a in new_addresses if a not in old_addresses]
        removed = [a for a in old_addresses if a not in new_addresses]
        bound = self._bind(added, settings)
        if bound is None:
            return False
        self._warn_restart_only(runtime.settings, settings)
        flushed = self._apply(settings, router)
        await self._switch_listeners(bound, removed)
        await self.server.apply_admin(settings)
        runtime.stats.reloads["success"] += 1
        runtime.stats.last_reload_ok = True
        log.info("configuration reloaded: cache kept except zones %s; listeners added %s, "
                 "removed %s; routes: %s", sorted(flushed) or "none", _show(added),
                 _show(removed), self.server.describe_routes(router))
        return True

    def _rejected(self, why: str) -> bool:
        stats = self.server.runtime.stats
        stats.reloads["failure"] += 1
        stats.last_reload_ok = False
        log.error("reload rejected, still serving the previous configuration: %s", why)
        return False

    def _bind(self, added: list[Address], settings: Settings) -> list | None:
        """Sockets for the new addresses, or None (and nothing left open) if one fails."""
        listeners = self.server.runtime.listeners
        bound: list = []
        for host, port in added:
            try:
                bound += listeners.bind([(host, port)], reuse_port=settings.server.workers > 1)
            except OSError as exc:
                for _, _, udp, tcp in bound:
                    udp.close()
                    tcp.close()
                self._rejected(_bind_error(host, port, exc))
                return None
        return bound

    def _warn_restart_only(self, old: Settings, new: Settings) -> None:
        for key, before, after in (("server.user", old.server.user, new.server.user),
                                   ("server.workers", old.server.workers, new.server.workers)):
            if before != after:
                log.warning("%s changed (%r -> %r): takes effect at the next restart",
                            key, before, after)

    def _apply(self, settings: Settings, router: Router) -> set[str]:
        """Switch every runtime object to the new settings; the zones whose cache went."""
        runtime = self.server.runtime
        handler = runtime.handler
        flushed = zones_to_flush(handler.router, router, handler.cache)
        carry_over_health(handler.router, router, runtime.stats)
        handler.cache = _resized(handler.cache, runtime.settings.cache.size,
                                 settings.cache.size, flushed)
        handler.router = router
        handler.timeout = settings.server.timeout
        handler.max_udp = settings.server.max_udp_size
        handler.shuffle_addresses = settings.cache.shuffle
        handler.shuffle_srv = settings.cache.shuffle_srv
        handler.prefetch = settings.cache.prefetch
        handler.chaos = settings.server.chaos
        handler.query_log = self.server.query_log_for(settings)
        runtime.listeners.acl = self.server.client_policy(settings)
        runtime.listeners.limits = Limits(
            max_inflight=settings.server.max_inflight,
            max_tcp_connections=settings.server.max_tcp_connections,
            tcp_idle_timeout=settings.server.tcp_idle_timeout)
        self.server.health.interval = settings.upstream.health_interval
        self.server.configure_logging(settings)
        runtime.settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, user=runtime.settings.server.user,
                                                 workers=runtime.settings.server.workers))
        return flushed

    async def _switch_listeners(self, bound: list, removed: list[Address]) -> None:
        listeners = self.server.runtime.listeners
        await listeners.start(bound)
        for host, port in removed:
            listeners.close(host, port)
            log.info("stopped listening on %s", _show([(host, port)]))


def _resized(cache: Cache, old_size: int, size: int, flushed: set[str]) -> Cache:
    """The same cache minus the flushed zones, or a new one of the new size with the rest."""
    if flushed:
        cache.flush(zones=flushed)
    if size == old_size:
        return cache
    resized = Cache(size, now=cache.now)
    for key, entry in cache.items()[-size:] if size > 0 else []:
        resized.put(key, entry)
    return resized


def _bind_error(host: str, port: int, exc: OSError) -> str:
    where = _show([(host, port)])
    if exc.errno == errno.EACCES and port < 1024 and os.geteuid() != 0:
        return (f"cannot bind {where}: permission denied. After dropping privileges consuldns "
                "can no longer bind ports below 1024: restart it, or run it under the systemd "
                "unit in config/ (CAP_NET_BIND_SERVICE) instead of as root with server.user")
    return f"cannot bind {where}: {exc.strerror or exc}"


def _show(addresses: list[Address]) -> str:
    return ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses) or "none"
