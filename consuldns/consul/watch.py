"""WATCH: keep the agent's answers for watched services in the cache, drop them when Consul
changes.

A `.consul` answer is cached by its TTL (0 by default: not at all). While a blocking query
on the agent's HTTP API watches the service behind a name, the cache keeps the agent's
answer up to `[cache.consul] watch_ttl` instead, and drops it the moment the watch sees a
change that DNS can show (consul/view.py). The watch is a signal, not a data source: answers
always come from the agent's DNS, so tags, only_passing and weights stay Consul's business,
and clients keep seeing the agent's TTL.

Safety rules (docs/design.md, "Watching Consul"):
- an answer is pinned only if no change was seen while it was fetched (generations), and not
  if it was asked within `[cache.consul] watch_settle` seconds (SETTLE by default) of a
  change: the agent's DNS reads may lag the HTTP view, so what it answers reflects the
  moment it was asked, however late the answer comes;
- a watch that fails (an error, 429, 403, a rate-limited wait) unpins its answers at once:
  they fall back to their TTL;
- an empty HTTP view while DNS answers means the HTTP token sees less than DNS: that
  service is not watched (said once), never taken as "no instances";
- when the agent has lost its servers, cached Consul answers are served stale at once
  instead of asking an agent that can only fail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from consuldns.consul import view
from consuldns.consul.http import ApiError, Endpoint, client, get_json
from consuldns.consul.names import WatchKey, domain_labels, watch_key

log = logging.getLogger("consuldns.watch")

SETTLE = 2.0  # watch_settle's default: seconds after a change (or a start) when nothing is pinned
WAIT_SECONDS = 300  # a blocking query's wait; Consul adds up to wait/16 of jitter
READ_TIMEOUT = WAIT_SECONDS * 17 / 16 + 10
LEADER_EVERY = 5.0  # seconds between /v1/status/leader probes
LEADER_TIMEOUT = 2.0
SWEEP_EVERY = 30.0  # seconds between looks for idle watches
IDLE_AFTER = 300.0  # a watch whose answers were not asked for this long stops
EVICTABLE_AFTER = 60.0  # at the cap, a watch unused this long makes room for a new one
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 30.0
BURST, REFILL_SECONDS = 2, 2.0  # per watch: 2 blocking queries at once, then one per 2 s
NO_SERVERS = "No known Consul servers"


class State(Enum):
    STARTING = "starting"  # no answer yet
    WATCHING = "watching"  # holding a blocking query: its answers may be pinned
    WAITING = "waiting"  # on its rate limit, holding no query; its answers follow their TTL
    FAILING = "failing"  # retrying after an error; its answers follow their TTL
    UNWATCHABLE = "unwatchable"  # given up on (an ACL mismatch, 404)


@dataclass(frozen=True)
class WatchSettings:
    """What the watcher reads from the configuration (ops/build.py makes it)."""

    endpoint: Endpoint | None  # None: watching is off
    domains: tuple[bytes, ...] = ()  # the Consul domain and alt domain, wire form, folded
    max_watches: int = 32
    watch_ttl: int = 300
    zones: tuple[str, ...] = ()  # route zones of the agent (for serving stale at once)
    settle: float = SETTLE  # [cache.consul] watch_settle


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken before the agent is asked: which watch, at which generation, when."""

    key: WatchKey
    generation: int
    taken: float  # the watcher's clock


class Watch:
    """One blocking-query loop for one service, and the cache keys pinned by it."""

    def __init__(self, watcher: Watcher, key: WatchKey):
        self.watcher = watcher
        self.key = key
        self.state = State.STARTING
        self.index = 0
        self.digest: str | None = None
        self.generation = 0  # DNS-visible views seen; 0: no answer yet
        self.changed_at = 0.0  # watcher.now() of the last DNS-visible change, or the first answer
        self.instances: list[dict[str, Any]] = []
        self.entries: set[bytes] = set()
        self.last_used = self.refilled = watcher.now()
        self.hits_seen = 0
        self.tokens = float(BURST)
        self.task: asyncio.Task | None = None
        self.problem = ""

    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            blocking = self.index != 0 and await self._may_block()
            try:
                body, headers = await get_json(
                    self.watcher.http, self.watcher.settings.endpoint, self.key.path,
                    self._params(blocking), READ_TIMEOUT)
                if not isinstance(body, list):
                    raise ApiError("a body that is not a list of instances", 200)
            except ApiError as exc:
                if not self._failed(exc):
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_FIRST
            self._answered(body, headers)

    def _params(self, blocking: bool) -> dict[str, str]:
        params = {**self.key.params(), "stale": ""}
        if blocking:
            params.update(index=str(self.index), wait=f"{WAIT_SECONDS}s")
        return params

    async def _may_block(self) -> bool:
        """Per-watch rate limit on blocking queries (the ones that could return over and
        over): BURST at once, then one per REFILL_SECONDS. True: one may go now. Else it
        waits, its answers following their TTL meanwhile (changes would go unseen), and
        returns False: the query after a wait does not block (queries that do not block
        cost nothing), so the watch sees at once what changed meanwhile, or that the index
        went back (a snapshot restored while no query was held: blocking on the old index
        would not see the writes counting up to it again), and vouches again."""
        now = self.watcher.now()
        self.tokens = min(BURST, self.tokens + (now - self.refilled) / REFILL_SECONDS)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.state = State.WAITING
        self.unpin()
        await asyncio.sleep((1 - self.tokens) * REFILL_SECONDS)
        self.tokens, self.refilled = 1.0, self.watcher.now()
        return False

    def _answered(self, body: list, headers) -> None:
        stats = self.watcher.handler.stats
        stats.watch_wakeups += 1
        index = max(_int(headers.get("X-Consul-Index")), 1)
        if index < self.index:
            # Snapshot restore, or another server's older view: start again from 0.
            stats.watch_resets += 1
            self.index = 0
            return
        self.index = index
        if self.state is not State.WATCHING and self.state is not State.WAITING:
            self._recovered()
        digest = view.digest(body)
        if digest != self.digest:
            if self.digest is not None:
                stats.watch_changes += 1
                self.invalidate()
            self.digest, self.generation = digest, self.generation + 1
            self.changed_at = self.watcher.now()
        self.instances = view.summary(body)  # check outputs too, for --explain
        self.state = State.WATCHING

    def _recovered(self) -> None:
        if self.state is State.FAILING:
            log.info("watch of %s works again: its answers are cached while it holds",
                     self.key)
        self.watcher.reachable = True
        self.problem = ""

    def invalidate(self) -> None:
        cache = self.watcher.handler.cache
        for key in self.entries:
            cache.discard(key)
        self.watcher.handler.stats.watch_invalidations += len(self.entries)
        self.entries.clear()

    def stop(self) -> None:
        """Vouch for nothing and hold no query any more."""
        self.unpin()
        if self.task is not None:
            self.task.cancel()

    def unpin(self) -> None:
        cache = self.watcher.handler.cache
        for key in self.entries:
            entry = cache.peek(key)
            if entry is not None:
                entry.unpin()
        if self.entries:
            self.watcher.handler.stats.watch_fallbacks += 1
        self.entries.clear()

    def _failed(self, exc: ApiError) -> bool:
        """Fall back to the TTL rules for this watch; True to retry, False to give up."""
        stats = self.watcher.handler.stats
        stats.watch_http_errors[str(exc.status or "none")] += 1
        self.unpin()
        self.state, self.digest, self.index = State.FAILING, None, 0
        self.problem = str(exc)
        if exc.status is None:
            self.watcher.unreachable(exc)
        elif exc.status == 403:
            self.watcher.forbidden(exc)
            return False
        elif exc.status == 429:
            self.watcher.too_many(self)
            return False
        elif exc.status == 404:
            self.state = State.UNWATCHABLE
            self.watcher.say_once(f"404 {self.key}", "watch of %s: HTTP 404 (an agent without "
                                  "this endpoint?): its answers follow their TTL", self.key)
            return False
        elif exc.status == 500 and NO_SERVERS in exc.body:
            self.watcher.servers.set_lost(True)
        else:
            log.warning("watch of %s failed (%s): its answers follow their TTL until it "
                        "recovers", self.key, exc)
        return True


class Watcher:
    """The watches of one process, their HTTP client and the agent's server health."""

    def __init__(self, settings: WatchSettings, handler: Any, now=time.monotonic):
        self.settings = settings
        self.handler = handler  # reads handler.cache and handler.stats live
        self.now = now
        self.domains = domain_labels(settings.domains)
        self.watches: dict[WatchKey, Watch] = {}
        self.max_watches = settings.max_watches
        self.enabled = settings.endpoint is not None
        self.servers = AgentServers(self)
        self.reachable: bool | None = None
        self.http = None  # the httpx client, made at start
        self.paused_until = 0.0  # after a 429: no new watch before then
        self._tasks: set[asyncio.Task] = set()
        self._said: set[str] = set()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self.enabled:
            log.info("not watching Consul services: consul.http is off; .consul answers "
                     "follow their TTL")
            return
        point = self.settings.endpoint
        try:
            self.http = client(point, self.settings.max_watches + 2)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            log.error("cannot set up the Consul HTTP API client (%s): not watching; .consul "
                      "answers follow their TTL", exc)
            self.enabled = False
            return
        log.info("watching up to %d Consul services through %s", self.settings.max_watches,
                 point.describe())
        for loop in (self.servers.probe_loop(), self._sweep_loop()):
            self._spawn(loop)

    async def stop(self) -> None:
        for watch in list(self.watches.values()):
            self.stop_watch(watch)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self.http is not None:
            await self.http.aclose()

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ the handler's side

    def agent_lost(self, zone: str) -> bool:
        """True while the agent has lost its servers and `zone` is one of its zones: its DNS
        can only fail (after up to rpc_hold_timeout), so a stale answer is served at once and
        refreshed behind, as after a failure (serve/handler.py)."""
        return self.servers.lost and zone in self.settings.zones

    # ------------------------------------------------------------ the fetcher's side

    def ticket(self, qname: bytes) -> Ticket | None:
        """Before the agent is asked for qname: its watch (started if need be), or None
        when the name is not watched."""
        if not self.enabled:
            return None
        key = watch_key(qname, self.domains)
        if key is None:
            return None
        watch = self.watches.get(key) or self._start_watch(key)
        if watch is None:
            return None
        watch.last_used = now = self.now()
        return Ticket(key, watch.generation, now)

    def pin(self, ticket: Ticket, cache_key: bytes, entry: Any, answered: bool) -> bool:
        """After the agent answered: keep `entry` up to watch_ttl when its watch vouches for
        it; `answered` says whether the answer had records. True when pinned."""
        watch = self.watches.get(ticket.key)
        if watch is None or watch.state is not State.WATCHING:
            return False
        if (watch.generation != ticket.generation
                or ticket.taken - watch.changed_at < self.settings.settle):
            return False
        if answered and not watch.instances:
            self._acl_mismatch(watch)
            return False
        entry.pin(self.now() + self.settings.watch_ttl)
        watch.entries.add(cache_key)
        return True

    # ------------------------------------------------------------ watches

    def _start_watch(self, key: WatchKey) -> Watch | None:
        if self.now() < self.paused_until:
            return None
        if len(self.watches) >= self.max_watches and not self._evict_one():
            return None
        watch = self.watches[key] = Watch(self, key)
        watch.task = self._spawn(watch.run())
        return watch

    def _evict_one(self) -> bool:
        """Stop the least recently used watch if it has been idle a while."""
        oldest = min(self.watches.values(), key=lambda w: w.last_used, default=None)
        if oldest is None or self.now() - oldest.last_used < EVICTABLE_AFTER:
            return False
        self.stop_watch(oldest)
        return True

    def stop_watch(self, watch: Watch) -> None:
        watch.stop()
        if self.watches.get(watch.key) is watch:
            del self.watches[watch.key]

    # ------------------------------------------------------------ failures

    def unreachable(self, exc: ApiError) -> None:
        if self.reachable is not False:
            log.warning("Consul HTTP API at %s not answering (%s): .consul answers follow "
                        "their TTL until it does", self.settings.endpoint.describe(), exc)
        self.reachable = False

    def forbidden(self, exc: ApiError) -> None:
        log.warning("Consul HTTP API refused the token (%s): watching is off, .consul answers "
                    "follow their TTL; give consul.token_file a token with service:read and "
                    "node:read", exc)
        self.enabled = False
        for watch in list(self.watches.values()):
            self.stop_watch(watch)

    def too_many(self, watch: Watch) -> None:
        self.max_watches = max(1, self.max_watches // 2)
        self.paused_until = self.now() + BACKOFF_MAX
        log.warning("Consul HTTP API: too many connections from this host (429): watching "
                    "at most %d services from now on", self.max_watches)
        self.stop_watch(watch)

    def _acl_mismatch(self, watch: Watch) -> None:
        self.say_once(f"acl {watch.key}", "the HTTP view of %s is empty while the agent's "
                       "DNS answers for it: the HTTP token may not read it (DNS uses "
                       "acl.tokens.dns). Not watching it: its answers follow their TTL",
                       watch.key)
        watch.stop()
        watch.state = State.UNWATCHABLE  # kept in the map, so it is not started again

    def say_once(self, topic: str, message: str, *args: Any) -> None:
        if topic not in self._said:
            self._said.add(topic)
            log.warning(message, *args)

    # ------------------------------------------------------------ idle watches

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.sweep()

    def sweep(self) -> None:
        """Stop watches whose answers nobody asked for in IDLE_AFTER seconds."""
        now = self.now()
        for watch in list(self.watches.values()):
            hits = sum(entry.hits for entry in map(self.handler.cache.peek, watch.entries)
                       if entry is not None)
            if hits != watch.hits_seen:
                watch.hits_seen, watch.last_used = hits, now
            elif now - watch.last_used > IDLE_AFTER:
                self.stop_watch(watch)

    # ------------------------------------------------------------ what operators see

    def describe(self, qname: bytes) -> dict[str, Any] | None:
        """The watch state of a name, for /cache and `query --explain`; None if unwatched."""
        if not self.enabled:
            return {"state": "off"}
        key = watch_key(qname, self.domains)
        if key is None:
            return None
        watch = self.watches.get(key)
        if watch is None:
            return {"service": str(key), "state": "not watched"}
        return {"service": str(key), "state": watch.state.value, "index": watch.index,
                "last_change_ago": round(self.now() - watch.changed_at, 1)
                if watch.generation else None,
                "pinned_answers": len(watch.entries), "instances": watch.instances,
                "problem": watch.problem}

    async def health_view(self, qname: bytes) -> dict[str, Any]:
        """The instances of qname's service as the HTTP API shows them now (one request that
        does not block): for `query --explain` on a service no watch holds."""
        key = watch_key(qname, self.domains)
        if not self.enabled or self.http is None or key is None:
            return {}
        try:
            body, _ = await get_json(self.http, self.settings.endpoint, key.path,
                                     {**key.params(), "stale": ""}, LEADER_TIMEOUT)
        except ApiError as exc:
            return {"problem": f"the HTTP API did not show the instances ({exc})"}
        return {"instances": view.summary(body) if isinstance(body, list) else []}

    def watching(self) -> int:
        """Watches holding a blocking query now."""
        return sum(1 for w in self.watches.values() if w.state is State.WATCHING)

    def status(self) -> str:
        """One line for /ready."""
        if not self.enabled:
            return "watch: off"
        active = self.watching()
        servers = "servers lost" if self.servers.lost else "servers ok"
        return (f"watch: {active} of {len(self.watches)} services watched through "
                f"{self.settings.endpoint.describe()}; agent {servers}")


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


class AgentServers:
    """Whether the agent still has its servers, from /v1/status/leader every LEADER_EVERY
    seconds. Without servers its DNS answers SERVFAIL, after up to rpc_hold_timeout (7 s):
    cached Consul answers are served stale at once instead (RFC 8767)."""

    def __init__(self, watcher: Watcher):
        self.watcher = watcher
        self.lost = False

    async def probe_loop(self) -> None:
        watcher = self.watcher
        while True:
            try:
                leader, _ = await get_json(watcher.http, watcher.settings.endpoint,
                                           "/v1/status/leader", {}, LEADER_TIMEOUT)
                watcher.reachable = True
                self.set_lost(leader == "")
            except ApiError as exc:
                if exc.status is None:
                    watcher.unreachable(exc)
                self.set_lost(exc.status == 500)
            await asyncio.sleep(LEADER_EVERY)

    def set_lost(self, lost: bool) -> None:
        if lost != self.lost:
            log.warning("the Consul agent %s its servers%s", "has lost" if lost else "has",
                        ": cached .consul answers are served stale" if lost else " again")
        self.lost = lost
