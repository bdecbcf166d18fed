"""Watching Consul end to end (issue 11): `consuldns serve --consul-http ADDRESS` with the
Consul double as the agent, its DNS interface and its HTTP API together; dnspython and nginx
as clients.

A TTL-0 answer is kept ("pinned") only once its service's watch has answered and
`[cache.consul] watch_settle` seconds have passed since the watch's last change: every test
polls /cache for that state before it measures, never sleeps for it. The settle period is
0.5 s here (2 s by default) to keep the file fast. The watch's rate limit (two requests at
once, then one per REFILL_SECONDS) is a clock, not a state a test can poll: where a test
needs the watch to have a request to spend, it waits REFILL_SECONDS and says so.

Most tests share one double and one consuldns (`pair`, reset to the default catalog with no
fault before each test); tests that change what cannot be reset (ACL tokens, connection
limits, a 403 that turns watching off, a catalog of 500 services) start their own (`own`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import pytest

from consuldns.consul.watch import BACKOFF_FIRST, REFILL_SECONDS
from tests.conftest import watch_logs
from tests.consul_double.process import start_double
from tests.consul_double_tests import httpclient
from tests.consul_double_tests.httpclient import wait_until
from tests.e2e.client import addresses, ask
from tests.e2e.fake_upstream import wait_until as poll
from tests.e2e.test_nginx import VALID, requests_for
from tests.harness import catalogs
from tests.harness.consuldns import ConsulDNS, product_env, start_consuldns

WEB = "web.service.consul"
DB = "db.service.consul"
WEB_HEALTH = "/v1/health/service/web"
HEALTHY = frozenset(catalogs.WEB_HEALTHY)  # 127.0.0.2-5; node5's 127.0.0.9 is critical
NODE1, NODE2 = catalogs.WEB_HEALTHY[:2]
SETTLE = 0.5  # [cache.consul] watch_settle in these tests
VISIBLE = 0.1  # a change shows in consuldns's answers within this (the 100 ms)
STALE_TTL = 30  # [cache.consul] stale_ttl: the TTL of a stale answer

WAKEUPS = "consuldns_consul_watch_wakeups_total"
CHANGES = "consuldns_consul_watch_changes_total"
INVALIDATIONS = "consuldns_consul_watch_invalidations_total"
RESETS = "consuldns_consul_watch_resets_total"
FALLBACKS = "consuldns_consul_watch_fallbacks_total"
WATCHES = "consuldns_consul_watches"
SERVERS_LOST = "consuldns_consul_servers_lost"


# ------------------------------------------------------------------ the servers


@dataclass
class Pair:
    """A Consul double and a consuldns that asks its DNS and (unless told) watches its HTTP."""

    double: Any
    server: ConsulDNS

    @property
    def control(self):
        return self.double.control

    def log(self) -> str:
        return self.server.log_text()


def config_text(tables: dict[str, dict[str, Any]]) -> str:
    """TOML for consuldns: the settle period of these tests plus `tables`."""
    merged: dict[str, dict[str, Any]] = {"cache.consul": {"watch_settle": SETTLE}}
    for table, keys in tables.items():
        merged.setdefault(table, {}).update(keys)
    return "".join(f"[{table}]\n" + "".join(f"{key} = {json.dumps(value)}\n"
                                            for key, value in keys.items()) + "\n"
                   for table, keys in merged.items())


def start_watching(workdir: Path, double, upstream, *, tables: dict | None = None,
                   args: tuple[str, ...] | None = None, env: dict | None = None) -> ConsulDNS:
    """consuldns asking the double's DNS and watching its HTTP API (or as `args` say)."""
    args = ("--consul-http", double.http_address) if args is None else args
    return start_consuldns(workdir, consul=double, upstreams=[upstream],
                           config=config_text(tables or {}), admin=True,
                           extra_args=list(args), env=env)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, upstream) -> Iterator[Pair]:
    double = start_double(catalogs.default_catalog())
    try:
        server = start_watching(tmp_path_factory.mktemp("watch"), double, upstream)
    except BaseException:
        double.stop()
        raise
    yield Pair(double, server)
    server.stop()
    double.stop()


@pytest.fixture
def pair(shared: Pair, request) -> Pair:
    """The shared pair with the default catalog and no fault (its logs go in a failure's
    report)."""
    watch_logs(request.node, [shared.server, shared.double])
    shared.control.clear_faults()
    shared.control.set_catalog(catalogs.default_catalog())
    return shared


@pytest.fixture
def own(consul_double_factory, request, tmp_path, upstream) -> Callable[..., Pair]:
    """start(catalog=None, http=None, tables=None, args=None, env=None) -> a pair of its own;
    `http` is the double's "http" settings (ACL tokens, connection limit); `env` may be a
    function of the double."""
    servers: list[ConsulDNS] = []
    watch_logs(request.node, servers)

    def start(catalog: dict | None = None, http: dict | None = None, env=None,
              **kwargs: Any) -> Pair:
        catalog = catalog or catalogs.default_catalog()
        if http:
            catalog["http"] = http
        double = consul_double_factory(catalog)
        kwargs["env"] = env(double) if callable(env) else env
        servers.append(start_watching(tmp_path / f"consuldns-{len(servers)}", double,
                                      upstream, **kwargs))
        return Pair(double, servers[-1])

    yield start
    for server in servers:
        server.stop()


# ------------------------------------------------------------------ what consuldns shows


def admin_get(server: ConsulDNS, path: str) -> str:
    with urllib.request.urlopen(server.admin_url + path, timeout=5) as response:
        return response.read().decode()


def cache_view(server: ConsulDNS, name: str, qtype: str = "A") -> dict:
    """GET /cache: the entry of name/type and the state of its watch."""
    return json.loads(admin_get(server, f"/cache?name={name}&type={qtype}"))


def metric(server: ConsulDNS, sample: str) -> float:
    """One sample of /metrics, e.g. 'consuldns_consul_watches' or
    'consuldns_consul_http_errors_total{status="429"}'; 0 when absent."""
    for line in admin_get(server, "/metrics").splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


def pinned(server: ConsulDNS, name: str, qtype: str = "A") -> bool:
    """The entry is kept past its own TTL (0) because its watch vouches for it."""
    view = cache_view(server, name, qtype)
    watch = view.get("watch") or {}
    return (view["state"] == "fresh" and view["ttl_left"] > 60
            and watch.get("state") == "watching" and watch["pinned_answers"] > 0)


def wait_pinned(server: ConsulDNS, name: str = WEB, timeout: float = 8.0) -> None:
    """Ask until the answer is pinned (the watch answered and the settle period passed)."""
    try:
        wait_until(lambda: ask(server, name) and pinned(server, name), timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(f"{name} not pinned in {timeout}s: {cache_view(server, name)}")


def settled(server: ConsulDNS, name: str) -> bool:
    """The watch of name answered and its last change is older than the settle period."""
    watch = cache_view(server, name)["watch"]
    ago = watch.get("last_change_ago")
    return watch["state"] == "watching" and ago is not None and ago >= SETTLE + 0.1


def answer(server: ConsulDNS, name: str = WEB) -> frozenset[str]:
    return frozenset(addresses(ask(server, name)))


def let_the_rate_limit_refill() -> None:
    """Not synchronisation: each wakeup costs the watch a request, and one comes back every
    REFILL_SECONDS (consul/watch.py). Without one to spend, a wakeup makes the watch fall
    back to the TTL rules for a moment, rightly, which a test of pinning must not measure."""
    time.sleep(REFILL_SECONDS)


@dataclass
class Seen:
    """What a client saw after a change: (seconds since the change began, addresses)."""

    answers: list[tuple[float, frozenset[str]]]
    expected: frozenset[str]

    @property
    def delay(self) -> float | None:
        """When the expected answer first showed."""
        return next((t for t, got in self.answers if got == self.expected), None)

    def wrong_after_first(self) -> list[tuple[float, list[str]]]:
        """Answers other than the expected one once it had shown (the old one coming back)."""
        first = self.delay
        return [(round(t, 3), sorted(got)) for t, got in self.answers
                if first is not None and t > first and got != self.expected]


def change_and_watch(pair: Pair, change: Callable[[], None], expected: frozenset[str]) -> Seen:
    """From a pinned answer: make the change, then ask as fast as answers come, past the
    settle period until the answer is pinned again, and 50 times more (from the cache)."""
    server = pair.server
    wait_pinned(server)
    start = time.monotonic()
    change()
    answers = []

    def ask_once() -> None:
        answers.append((time.monotonic() - start, answer(server)))

    while time.monotonic() - start < SETTLE:
        ask_once()
    wait_until(lambda: ask_once() or pinned(server, WEB), timeout=5)
    for _ in range(50):
        ask_once()
    return Seen(answers, expected)


def assert_seen_at_once(seen: Seen, what: str) -> None:
    assert seen.delay is not None and seen.delay < VISIBLE, (what, seen.answers[:5])
    assert seen.wrong_after_first() == [], what


# ------------------------------------------------------------------ the shared pair


def test_400_queries_for_a_watched_ttl0_name_reach_the_agent_a_handful_of_times(pair):
    server, control = pair.server, pair.control
    asked = control.count(WEB)
    first = ask(server, WEB)  # starts the watch (if no earlier test did)
    wait_until(lambda: settled(server, WEB), timeout=5)  # polls /cache, asks no DNS
    replies = [first] + [ask(server, WEB) for _ in range(399)]
    # The first query, the first one after the settle period (which is pinned), one spare.
    assert control.count(WEB) - asked <= 3
    assert all(frozenset(addresses(reply)) == HEALTHY for reply in replies)
    # Clients keep seeing the agent's TTL, never the watch's.
    assert {rrset.ttl for reply in replies for rrset in reply.answer} == {0}


def test_deregistration_failing_check_and_new_instance_show_within_100_ms(pair):
    control = pair.control
    control.register_node("node6", "127.0.0.6")
    steps = (
        ("deregistration", lambda: control.deregister_service("web-node1"),
         HEALTHY - {NODE1}),
        ("check going critical", lambda: control.set_check("critical", service_id="web-node2"),
         HEALTHY - {NODE1, NODE2}),
        ("new instance", lambda: control.register_service(
            "web", "node6", id="web-node6", port=catalogs.WEB_PORT, tags=["http"],
            checks=[{"id": "service:web-node6", "status": "passing"}]),
         HEALTHY - {NODE1, NODE2} | {"127.0.0.6"}),
    )
    for what, change, expected in steps:
        assert_seen_at_once(change_and_watch(pair, change, expected), what)
    assert metric(pair.server, INVALIDATIONS) >= 3


def test_an_output_only_change_invalidates_nothing(pair):
    server, control = pair.server, pair.control
    wait_pinned(server)
    let_the_rate_limit_refill()
    before = {name: metric(server, name) for name in (WAKEUPS, CHANGES, INVALIDATIONS)}
    asked = control.count(WEB)
    control.set_check("passing", service_id="web-node1",
                      output="HTTP GET http://127.0.0.2:8080/health: 200 OK in 3 ms")
    wait_until(lambda: metric(server, WAKEUPS) > before[WAKEUPS])  # the watch saw the write
    assert all(answer(server) == HEALTHY for _ in range(100))
    assert control.count(WEB) == asked  # every answer came from the cache
    assert metric(server, CHANGES) == before[CHANGES]
    assert metric(server, INVALIDATIONS) == before[INVALIDATIONS]
    assert pinned(server, WEB)


def test_a_change_to_another_service_leaves_this_one_cached(pair):
    server, control = pair.server, pair.control
    wait_pinned(server, DB)
    wait_pinned(server, WEB)
    invalidations = metric(server, INVALIDATIONS)
    web_asked = control.count(WEB)
    seen = change_and_watch_db(pair)
    assert seen.delay is not None and seen.delay < VISIBLE, seen.answers[:5]
    assert all(answer(server) == HEALTHY for _ in range(100))
    assert control.count(WEB) == web_asked
    assert metric(server, INVALIDATIONS) == invalidations + 1  # db's one answer
    assert pinned(server, WEB)


def change_and_watch_db(pair: Pair) -> Seen:
    """db's only instance goes critical: its name has no address any more."""
    start = time.monotonic()
    pair.control.set_check("critical", service_id="db-node5")
    answers = []
    while (elapsed := time.monotonic() - start) < 0.3:
        answers.append((elapsed, answer(pair.server, DB)))
    return Seen(answers, frozenset())


def test_an_index_going_backwards_restarts_the_watch_from_zero(pair):
    """A snapshot restore drops every index to 1, and later writes count up from there: a
    watch still blocking on its old, higher index would never see them. Restored while the
    watch's query is held: it returns at once with the lower index."""
    server, control = pair.server, pair.control
    wait_pinned(server)
    bump_index(control)
    restore_when(pair, lambda view, held, index_now: view["index"] == index_now and held == 1)
    seen = change_and_watch(pair, lambda: control.deregister_service("web-node1"),
                            HEALTHY - {NODE1})
    assert_seen_at_once(seen, "deregistration after a restore during a held query")


def test_an_index_going_backwards_during_a_rate_limit_wait(pair):
    """The same restore while the watch waits on its rate limit and holds no query: its
    next query must not block on the old index."""
    server, control = pair.server, pair.control
    wait_pinned(server)
    restore_during_rate_limit_wait(pair)
    seen = change_and_watch(pair, lambda: control.set_check("critical", service_id="web-node2"),
                            HEALTHY - {NODE2})
    assert_seen_at_once(seen, "a failing check after a restore during a rate-limit wait")


def bump_index(control) -> None:
    """An output-only write: web's index becomes the newest raft index, DNS sees no change."""
    control.set_check("passing", service_id="web-node3", output=f"at {time.monotonic()}")


def restore_when(pair: Pair, ready: Callable[[dict, int, int], bool]) -> None:
    """Once ready(web's watch in /cache, queries the double holds for it, web's index now) is
    true: restore a snapshot at index 1, and wait until the watch reset."""
    server, double = pair.server, pair.double

    def watch_ready() -> bool:
        index_now = httpclient.get(double, WEB_HEALTH).index
        held = double.control.http_counters().held.get(WEB_HEALTH, 0)
        return ready(cache_view(server, WEB)["watch"], held, index_now)

    wait_until(watch_ready)
    restore(pair)


def restore(pair: Pair) -> None:
    resets = metric(pair.server, RESETS)
    pair.control.restore_snapshot(1)
    wait_until(lambda: metric(pair.server, RESETS) > resets)


def restore_during_rate_limit_wait(pair: Pair) -> None:
    """Writes DNS cannot see until the watch has no request left to spend and waits (it
    holds no query and keeps nothing pinned meanwhile), then the restore."""
    server, control = pair.server, pair.control

    def waiting() -> bool:
        return (control.http_counters().held.get(WEB_HEALTH, 0) == 0
                and cache_view(server, WEB)["watch"]["pinned_answers"] == 0)

    for _ in range(6):
        bump_index(control)
        if poll(waiting, timeout=0.3):
            restore(pair)
            return
    raise AssertionError("the watch never waited on its rate limit")


def test_dns_lagging_the_http_view_by_300_ms_pins_no_old_answer(pair):
    """The agent's DNS answers from the catalog of 300 ms ago, and slowly (0.4 s): answers
    asked during the lag carry the old set, some arriving after the settle period. None of
    them may be kept; every question is asked under its own cache key (DO, CD, a tag), so
    each is a fetch of its own at its own moment."""
    server, control = pair.server, pair.control
    questions = [(name, do, cd) for name in (WEB, "http." + WEB)
                 for do in (False, True) for cd in (False, True)]
    for question in questions:
        ask_question(server, *question)
    wait_pinned(server)
    let_the_rate_limit_refill()
    control.set_fault("dns_lag", 0.3)
    control.set_fault("latency", 0.4)
    start = time.monotonic()
    control.deregister_service("web-node1")
    during = ask_at(server, questions, start, offsets=[0.04 * i for i in range(len(questions))])
    assert any(NODE1 in got for got in during), "the lag did not show: nothing was tested"
    control.clear_faults()
    after = ask_at(server, questions, time.monotonic(), offsets=[0.0] * len(questions))
    kept_old = [question for question, got in zip(questions, after) if NODE1 in got]
    assert kept_old == []
    wait_pinned(server)  # and what is pinned once the settle period is over is the new set
    assert answer(server) == HEALTHY - {NODE1}


def ask_question(server: ConsulDNS, name: str, do: bool, cd: bool) -> frozenset[str]:
    query = dns.message.make_query(name, "A", want_dnssec=do)
    if cd:
        query.flags |= dns.flags.CD
    reply = dns.query.udp(query, server.host, port=server.port, timeout=5)
    return frozenset(addresses(reply))


def ask_at(server: ConsulDNS, questions: list, start: float,
           offsets: list[float]) -> list[frozenset[str]]:
    """Ask each question in a thread of its own, `offset` seconds after `start`."""
    results: list[frozenset[str]] = [frozenset()] * len(questions)

    def one(i: int) -> None:
        time.sleep(max(0.0, start + offsets[i] - time.monotonic()))
        results[i] = ask_question(server, *questions[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(questions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


@pytest.mark.nginx
def test_nginx_stops_using_a_deregistered_backend_as_with_ttl_0(pair, backends, nginx_server):
    """nginx (`valid=1s`) keeps an answer up to valid + 1 s on its one-second clock, with or
    without the watch; the watch may add at most 0.2 s to that, while nginx's lookups are
    cache hits."""
    server, control = pair.server, pair.control
    pool = backends(count=4, first=2)
    proxy = nginx_server(server, backend_port=pool.port)
    wait_pinned(server)
    asked = control.count(WEB)
    before = requests_for(proxy, 0.5)  # nginx's first lookup
    assert control.count(WEB) == asked  # answered from the cache
    assert {backend for _, _, backend in before} == HEALTHY
    control.deregister_service("web-node1")
    removed_at = time.monotonic()
    after = requests_for(proxy, VALID + 2.0)
    assert all(status == 200 for _, status, _ in after)
    to_removed = [round(sent - removed_at, 2) for sent, _, backend in after if backend == NODE1]
    assert not to_removed or max(to_removed) < VALID + 1.0 + 0.2, to_removed
    late = {backend for sent, _, backend in after if sent - removed_at > VALID + 1.2}
    assert late == HEALTHY - {NODE1}


def test_http_api_down_mid_watch_falls_back_within_a_second(pair):
    server, control = pair.server, pair.control
    wait_pinned(server)
    fallbacks = metric(server, FALLBACKS)
    asked = control.count(WEB)
    control.set_fault("http_down")  # listeners closed, the held query's connection dropped
    down_at = time.monotonic()
    wait_until(lambda: answer(server) and control.count(WEB) > asked, timeout=1.0,
               interval=0.01)
    # At once (the issue asks within a second): not only when the watch retries,
    # BACKOFF_FIRST later, and its rate limit would make it fall back too.
    assert time.monotonic() - down_at < 0.8 * BACKOFF_FIRST
    assert metric(server, FALLBACKS) == fallbacks + 1
    # Unwatched, a change shows on the next query, as with TTL 0.
    control.deregister_service("web-node1")
    assert answer(server) == HEALTHY - {NODE1}
    control.clear_faults()  # the same port listens again: the watch comes back by itself
    wait_pinned(server, timeout=10)


def test_agent_without_servers_stale_answers_at_once(pair):
    """The agent lost its servers: its DNS answers SERVFAIL only after 1.5 s and its HTTP
    API 500 "No known Consul servers", which ends the held query at once. Cached answers
    are served stale (TTL 30) at once, nobody waits for the agent."""
    server, control = pair.server, pair.control
    wait_pinned(server)
    control.set_fault("servfail", 1.5)
    start = time.monotonic()
    timed = []
    while time.monotonic() - start < 1.0:
        sent = time.monotonic()
        reply = ask(server, WEB, timeout=3)
        timed.append((round(time.monotonic() - sent, 3), frozenset(addresses(reply)),
                      {rrset.ttl for rrset in reply.answer}))
    lost = metric(server, SERVERS_LOST)
    control.clear_faults()
    assert max(took for took, _, _ in timed) < 0.3, timed
    assert all(got == HEALTHY for _, got, _ in timed), timed
    assert any(ttls == {STALE_TTL} for _, _, ttls in timed), timed
    assert lost == 1


# ------------------------------------------------------------------ pairs of their own


def test_consul_http_off_every_ttl0_query_reaches_the_agent(own):
    """--consul-http off (which wins over CONSUL_HTTP_ADDR): consuldns as before the watch."""
    pair = own(args=("--consul-http", "off"),
               env=lambda double: {"CONSUL_HTTP_ADDR": double.http_address})
    replies = [ask(pair.server, WEB) for _ in range(50)]
    assert pair.control.count(WEB) == 50
    assert all(frozenset(addresses(reply)) == HEALTHY for reply in replies)
    counters = pair.control.http_counters()
    assert counters.count() == 0 and counters.max_connections_total == 0
    assert cache_view(pair.server, WEB)["watch"] == {"state": "off"}
    assert "watch: off" in admin_get(pair.server, "/ready")
    assert metric(pair.server, WATCHES) == 0
    assert "not watching Consul services: consul.http is off" in pair.log()


def test_an_unknown_token_gets_403_once_and_watching_stops(own):
    token = "0b1e5ad0-not-a-token-the-agent-knows"
    pair = own(http={"acl_tokens": {"reader": [""]}}, env={"CONSUL_HTTP_TOKEN": token})
    asked = ask_for(pair.server, [WEB], seconds=1.2)
    assert pair.control.count(WEB) == asked[WEB]  # every query went to the agent
    counters = pair.control.http_counters()
    # One try, no retries: the token will not get better by itself.
    assert counters.count(endpoint="health_service") == 1
    assert counters.count(status=403) == 1
    log = pair.log()
    assert log.count("refused the token") == 1
    assert token not in log
    assert "watch: off" in admin_get(pair.server, "/ready")


def ask_for(server: ConsulDNS, names: list[str], seconds: float) -> dict[str, int]:
    """Ask each name in turn for `seconds`; how many times each was asked."""
    asked = dict.fromkeys(names, 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name in names:
            ask(server, name)
            asked[name] += 1
        time.sleep(0.02)
    return asked


def test_an_acl_filtered_empty_view_is_not_no_instances(own, tmp_path):
    """The HTTP token may read db but not web: /v1/health/service/web is 200 [] while the
    agent's DNS (its own token) answers for web. web is not watched (said once), its answers
    keep TTL 0; db is watched."""
    token_file = tmp_path / "consul-token"
    token_file.write_text("db-reader\n")
    pair = own(http={"acl_tokens": {"db-reader": ["db"]}},
               tables={"consul": {"token_file": str(token_file)}})
    asked = ask_for(pair.server, [WEB, DB], seconds=SETTLE + 1.0)
    assert pair.control.count(WEB) == asked[WEB]  # never kept
    assert pinned(pair.server, DB)
    assert cache_view(pair.server, WEB)["watch"]["state"] == "unwatchable"
    held = pair.control.http_counters().held
    assert held.get("/v1/health/service/web", 0) == 0
    assert held.get("/v1/health/service/db") == 1
    assert metric(pair.server, WATCHES) == 1
    assert pair.log().count("the HTTP view of service web is empty") == 1


def more_services(catalog: dict, names: list[str]) -> dict:
    """catalog with one passing instance of each named service, spread over node1..node5."""
    nodes = sorted(catalogs.NODES)
    for i, name in enumerate(names):
        node = nodes[i % len(nodes)]
        catalog["services"].append({
            "id": f"{name}-{node}", "name": name, "node": node, "port": 9000 + i % 1000,
            "tags": [], "checks": [{"id": f"service:{name}-{node}", "status": "passing"}]})
    return catalog


def test_429_stops_that_watch_and_pauses_new_ones(own):
    """The agent allows 3 connections from this address: the leader probe and the first
    watches take them; the watch refused (429) stops, new watches wait 30 s, the answers
    of unwatched services keep TTL 0, the watched ones stay cached."""
    services = ["web", "db", "api", "cache", "search"]
    pair = own(catalog=more_services(catalogs.default_catalog(), services[2:]),
               http={"max_conns_per_client": 3})
    server, control = pair.server, pair.control
    names = [f"{service}.service.consul" for service in services]
    wait_until(lambda: control.http_counters().count(endpoint="status_leader") >= 1)
    for name in names:
        ask(server, name)
        wait_until(lambda name=name: cache_view(server, name)["watch"]["state"] != "starting")
    states = {name: cache_view(server, name)["watch"]["state"] for name in names}
    watched = [name for name in names if states[name] == "watching"]
    unwatched = [name for name in names if states[name] != "watching"]
    assert 2 <= len(watched) <= 3 and set(watched) == set(names[:len(watched)]), states
    before = {name: control.count(name) for name in names}
    asked = ask_for(server, names, seconds=SETTLE + 1.0)
    for name in unwatched:
        assert control.count(name) - before[name] == asked[name], name
    for name in watched:
        assert pinned(server, name), name
    assert metric(server, 'consuldns_consul_http_errors_total{status="429"}') == 1
    assert pair.log().count("too many connections") == 1


def test_500_services_asked_at_most_max_watches_connections(own):
    """max_watches = 8: eight blocking queries held, and one connection more at most: the
    leader probe's (kept alive between its requests every 5 s)."""
    max_watches = 8
    services = [f"svc{i:03d}" for i in range(500)]
    pair = own(catalog=more_services(catalogs.default_catalog(), services),
               tables={"consul": {"max_watches": max_watches}})
    server, control = pair.server, pair.control
    for service in services:
        ask(server, f"{service}.service.consul")
    wait_until(lambda: metric(server, WATCHES) == max_watches)
    counters = control.http_counters()
    assert counters.held_total == max_watches
    assert max_watches <= counters.max_connections_total <= max_watches + 1
    watched = {path for (endpoint, path, _), count in counters.requests.items()
               if endpoint == "health_service"}
    assert watched == {f"/v1/health/service/{service}" for service in services[:max_watches]}
    again = [control.count(f"{s}.service.consul") for s in services[max_watches:]]
    for service in services[max_watches:]:
        ask(server, f"{service}.service.consul")
    assert [control.count(f"{s}.service.consul") for s in services[max_watches:]] == [
        count + 1 for count in again]


# ------------------------------------------------------------------ --explain


def test_explain_shows_each_instance_and_why_one_is_left_out(pair):
    """`query --explain` on a service name answers "why is 127.0.0.9 missing" in one
    command: the agent's health view, each instance with the checks that are not passing."""
    ask(pair.server, WEB)  # the service is watched from now on: the view comes from the watch
    wait_until(lambda: cache_view(pair.server, WEB)["watch"]["state"] == "watching")
    pair.control.set_check("critical", service_id="web-node5", node="node5",
                           output="HTTP GET http://127.0.0.9:8080/health: 503 Service Unavailable")
    out = explain(pair.server, WEB)  # an output-only change: the watch's view has it too
    assert ";; instances (the agent's HTTP API):" in out
    lines = out.splitlines()
    left_out = next(i for i, line in enumerate(lines) if "127.0.0.9" in line)
    assert lines[left_out].endswith(": critical")
    assert "503 Service Unavailable" in lines[left_out + 1]
    assert all(any(f"{address}:" in line and line.endswith(": passing") for line in lines)
               for address in HEALTHY)


def explain(server: ConsulDNS, name: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "consuldns", "query", name, "--server", server.address,
         "--explain", "--admin", server.admin_address], capture_output=True, text=True,
        timeout=30, env=product_env(), check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout
