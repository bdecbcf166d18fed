"""SIGHUP: re-read the configuration and switch to it at once, or not at all.

Order: read and validate the file, build the new wiring (ops/build.py, as start-up does),
bind the new listen addresses; only when all of that worked is anything changed. A bad file,
or an address that cannot be bound, leaves the server exactly as it was, with the reason
logged. Applying keeps the cache of every zone whose upstreams and cache policy are
unchanged and whose names still route to it; server health and counters carry over for
servers that stay.
"""

from __future__ import annotations

import dataclasses
import logging

from consuldns import address
from consuldns.address import Address
from consuldns.dns import wire
from consuldns.errors import ConfigError
from consuldns.ops import build, descriptors
from consuldns.ops.binding import bind_error_text
from consuldns.ops.config import ConfigSource
from consuldns.ops.settings import Settings
from consuldns.serve.cache import Cache
from consuldns.serve.listeners import BindError, Bound, bind
from consuldns.serve.router import Router
from consuldns.serve.stats import Stats

log = logging.getLogger("consuldns.reload")

RESTART_ONLY = ("server.user", "server.workers")  # read once, before serving starts


def listen_set(settings: Settings) -> list[Address]:
    return [address.parse_listen(text) for text in settings.server.listen]


def zones_to_flush(old: Router, new: Router, cache: Cache) -> set[str]:
    """Zones whose cached answers may now be wrong.

    A zone is flushed when it is gone, when its servers or cache policy changed, or when some
    of its cached names now route elsewhere (a zone was added under it).
    """
    new_routes = {route.zone: route for route in new.routes}
    doomed = {route.zone for route in old.routes
              if route.zone not in new_routes
              or route.signature() != new_routes[route.zone].signature()}
    for key, entry in cache.items():
        if entry.zone not in doomed and new.route(wire.key_name(key)).zone != entry.zone:
            doomed.add(entry.zone)
    return doomed


def carry_over_health(old: Router, new: Router, stats: Stats) -> None:
    """Servers kept in a group keep their counters, health and latency histogram."""
    previous = {(group.name, server.address): server
                for group, _ in old.groups() for server in group.servers}
    latency = {}
    for group, _ in new.groups():
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
        self.server = server  # ops/app.Server: its runtime and admin listener
        self.source = source

    async def reload(self) -> bool:
        """One reload attempt; True when the new configuration is in effect."""
        runtime = self.server.runtime
        log.info("SIGHUP: reloading the configuration%s",
                 f" from {self.source.path}" if self.source.path else "")
        try:
            settings = self.source.load()
            wired = build.wiring(settings, runtime.stats)
        except ConfigError as exc:
            return self._rejected(str(exc).replace("\n", "; "))
        old_addresses, new_addresses = listen_set(runtime.settings), listen_set(settings)
        added = [a for a in new_addresses if a not in old_addresses]
        removed = [a for a in old_addresses if a not in new_addresses]
        bound = self._bind(added)
        if bound is None:
            return False
        self._warn_restart_only(runtime.settings, settings)
        flushed = self._apply(settings, wired)
        await self._switch_listeners(bound, removed)
        await self.server.apply_admin(settings)
        runtime.stats.reloads["success"] += 1
        runtime.stats.last_reload_ok = True
        descriptors.warn_unless_fit(settings)
        log.info("configuration reloaded: %s; listeners added %s, removed %s; routes: %s",
                 _flushed_text(flushed), _show(added), _show(removed),
                 build.describe_routes(wired.router))
        return True

    def _rejected(self, why: str) -> bool:
        stats = self.server.runtime.stats
        stats.reloads["failure"] += 1
        stats.last_reload_ok = False
        log.error("reload rejected, still serving the previous configuration: %s", why)
        return False

    def _bind(self, added: list[Address]) -> list[Bound] | None:
        """Sockets for the new addresses, or None (and nothing left open: bind closes what it
        opened) if one fails. server.workers takes a restart: the running count decides
        (SO_REUSEPORT, steering)."""
        try:
            return bind(added, self.server.runtime.settings.server.workers)
        except BindError as exc:
            self._rejected(bind_error_text(exc, self.server.dropped_root))
            return None

    def _warn_restart_only(self, old: Settings, new: Settings) -> None:
        for key in RESTART_ONLY:
            section, name = key.split(".")
            before = getattr(getattr(old, section), name)
            after = getattr(getattr(new, section), name)
            if before != after:
                log.warning("%s changed (%r -> %r): takes effect at the next restart",
                            key, before, after)

    def _apply(self, settings: Settings, wired: build.Wiring) -> set[str]:
        """Switch every runtime object to the new wiring; the zones whose cache went."""
        runtime = self.server.runtime
        flushed = zones_to_flush(runtime.router, wired.router, runtime.cache)
        carry_over_health(runtime.router, wired.router, runtime.stats)
        if flushed:
            runtime.cache.flush(zones=flushed)
        runtime.cache.resize(settings.cache.size, settings.cache.max_bytes)
        build.apply(runtime, wired)
        runtime.settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, user=runtime.settings.server.user,
                                                 workers=runtime.settings.server.workers))
        return flushed

    async def _switch_listeners(self, bound: list[Bound], removed: list[Address]) -> None:
        listeners = self.server.runtime.listeners
        await listeners.start(bound)
        for host, port in removed:
            listeners.close(host, port)
            log.info("stopped listening on %s", _show([(host, port)]))


def _flushed_text(flushed: set[str]) -> str:
    if not flushed:
        return "cache kept"
    return "cache kept except zones " + ", ".join(sorted(flushed))


def _show(addresses: list[Address]) -> str:
    return ", ".join(address.show(h, p) for h, p in addresses) or "none"
