"""Composition root: build the pipeline from settings and run the server's lifecycle.

Bind every socket (DNS and admin), drop privileges, serve until SIGTERM/SIGINT, then stop
accepting, let in-flight queries finish (bounded) and exit 0. SIGHUP reloads the
configuration (ops/reload.py); servers marked down are probed in the background
(upstream/health.py). ops/build.py turns settings into the objects that serve.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

from consuldns import __version__, address
from consuldns.consul.ready import READY_TIMEOUT, agent_ready
from consuldns.consul.watch import Watcher, WatchSettings
from consuldns.dns import wire
from consuldns.ops import build, descriptors, logs
from consuldns.ops.admin import AdminServer
from consuldns.ops.binding import bind_error_text
from consuldns.ops.config import ConfigSource
from consuldns.ops.fleet import Fleet
from consuldns.ops.privileges import (
    PrivilegeError,
    drop_privileges,
    prepare_switch,
    switched_ids,
)
from consuldns.ops.reload import Reloader
from consuldns.ops.settings import ADMIN_OFF, Settings
from consuldns.ops.workers import Worker, supervise
from consuldns.serve.cache import Cache
from consuldns.serve.handler import Handler
from consuldns.serve.listeners import BindError, Listeners, bind
from consuldns.serve.stats import Stats
from consuldns.upstream import sockets
from consuldns.upstream.health import HealthChecker

try:
    import uvloop
except ImportError:  # optional: asyncio's own loop serves too, more slowly
    uvloop = None

log = logging.getLogger("consuldns")

DRAIN_TIMEOUT = 3.0
STARTUP_AGENT_TIMEOUT = 0.5  # a silent agent delays the start by this much at most


class Runtime:
    """The live objects of one serving process; a reload points them at a new wiring."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.stats = Stats()
        wired = build.wiring(settings, self.stats)
        self.cache = Cache(settings.cache.size, settings.cache.max_bytes)
        self.handler = Handler(self.cache, wired.options, stats=self.stats)
        self.listeners = Listeners(self.handler, wired.access, wired.limits, self.stats)
        self.health = HealthChecker(lambda: self.handler.options.router.groups(),
                                    wired.health_interval)
        self.watcher = self.handler.watcher = Watcher(wired.watch, self.handler)

    @property
    def router(self):
        return self.handler.options.router

    async def agent_answers(self, timeout: float = READY_TIMEOUT) -> tuple[bool, str]:
        """(ready, detail): does the Consul agent answer, asked through the route of
        consul.domain (consul/ready.py)? Start-up and GET /ready ask this."""
        route = self.router.route(wire.text_to_name(self.settings.consul.domain))
        return await agent_ready(route.group, route.zone, timeout)

    def use_watch(self, settings: WatchSettings) -> None:
        """Watch with new settings (a reload): the old watches stop, new ones start."""
        if settings == self.watcher.settings:
            return
        old, self.watcher = self.watcher, Watcher(settings, self.handler)
        self.handler.watcher = self.watcher
        asyncio.get_running_loop().create_task(old.stop())
        self.watcher.start()


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
    logs.configure(settings.log)
    try:
        prepare_switch(settings.server.user)
    except PrivilegeError as exc:
        log.error("%s", exc)
        return 1
    descriptors.prepare(settings)
    runner = uvloop.run if uvloop is not None else asyncio.run
    source = source or ConfigSource()
    if settings.server.workers > 1:  # N processes on one port (SO_REUSEPORT), see workers.py
        return supervise(settings.server.workers,
                         lambda worker: runner(Server(settings, source, worker).serve()),
                         owner=switched_ids(settings.server.user))
    return runner(Server(settings, source).serve())


class Server:
    """One serving process: DNS listeners, admin listener, health probes, signals, reload.
    As one of several workers it also serves the admin endpoints on its private socket, and
    only the worker in slot 0 owns the public admin port (answering for all)."""

    def __init__(self, settings: Settings, source: ConfigSource, worker: Worker | None = None):
        if worker is not None:
            logs.set_worker(worker.slot)
        self.worker = worker
        self.runtime = Runtime(settings)
        owns_port = worker is not None and worker.slot == 0
        self.admin = AdminServer(self.runtime, Fleet(worker) if owns_port else None)
        self.admin_listen = ""
        self.dropped_root = False  # switched from root to server.user: no more ports < 1024
        self.reloader = Reloader(self, source)
        self._reloading: asyncio.Task | None = None

    async def serve(self) -> int:
        settings = self.runtime.settings
        addresses = [address.parse_listen(text) for text in settings.server.listen]
        try:
            bound = bind(addresses, settings.server.workers)
        except BindError as exc:
            log.error("%s", bind_error_text(exc))
            return 1
        await self.apply_admin(settings)  # before dropping privileges, like the DNS ports
        try:
            self.dropped_root = drop_privileges(settings.server.user)
        except PrivilegeError as exc:
            log.error("%s", exc)
            return 1
        if self.worker is not None:  # after the switch: the socket belongs to that user
            await self.admin.start_private(self.worker.socket_path(self.worker.slot))
        stop = self._install_signals()
        self.runtime.health.start()
        await self._check_agent()  # before answering anyone: the agent sees it first
        self.runtime.watcher.start()
        await self.runtime.listeners.start(bound)
        log.info("consuldns %s ready (pid %d), configuration from %s; routes: %s", __version__,
                 os.getpid(), self.reloader.source.path or "built-in defaults and flags",
                 build.describe_routes(self.runtime.router))
        await stop.wait()
        log.info("stopping: draining in-flight queries")
        self.runtime.health.stop()
        await self.runtime.watcher.stop()
        await self.admin.stop_all()
        await self.runtime.listeners.stop(DRAIN_TIMEOUT)
        sockets.close_all()
        log.info("stopped")
        return 0

    async def _check_agent(self) -> None:
        """Say at startup whether the agent answers: the first thing an operator wants to know."""
        ready, detail = await self.runtime.agent_answers(STARTUP_AGENT_TIMEOUT)
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
        """Start, move or stop the admin listener to match settings.admin.listen (only the
        worker in slot 0 has it)."""
        if self.worker is not None and self.worker.slot != 0:
            return
        wanted = settings.admin.listen
        if wanted == self.admin_listen:
            return
        await self.admin.stop()
        self.admin_listen = wanted
        if wanted not in ADMIN_OFF:
            host, port = address.parse(wanted)
            if not await self.admin.start(host, port):
                self.admin_listen = ""  # retried at the next reload
