"""Fixtures for the test topology: client -> consuldns -> Consul double / unbound (dnsmasq).

Every server runs as a real process on a free loopback port, its files under the test's tmp
dir, and is stopped by PID in the fixture finalizer. When a test fails, the tail of each
server's log is attached to the report.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.admin import http
from tests.harness import catalogs
from tests.harness.consuldns import Address, ConsulDNS, address_of, start_consuldns
from tests.harness.missing import unavailable
from tests.harness.netns import Netns, NetnsUnavailable
from tests.harness.nginx import (
    NGINX,
    Backends,
    Nginx,
    NginxSettings,
    start_backends,
    start_nginx,
)
from tests.harness.procs import LOG_TAIL_CHARS, Server
from tests.harness.tools import need
from tests.harness.topology import NetnsTopology, start_netns_topology
from tests.harness.upstream import (
    DNSMASQ,
    UNBOUND,
    start_dnsmasq,
    start_dnsmasq_forwarder,
    start_unbound,
)

_APT = {UNBOUND: "unbound", DNSMASQ: "dnsmasq-base", NGINX: "nginx-light"}


def _require(binary: str) -> None:
    """A missing server binary fails in CI (which must install it) and skips elsewhere."""
    need(binary, _APT[binary])


_WATCHED = pytest.StashKey[list[list[Any]]]()


def watch_logs(node: pytest.Item, servers: list[Any]) -> None:
    """Attach the log tails of `servers` (a live list) to the report if the test fails."""
    node.stash.setdefault(_WATCHED, []).append(servers)


class Started:
    """The servers one fixture started; stopped in reverse order by PID."""

    def __init__(self, node: pytest.Item, tmp: Path, kind: str) -> None:
        self.items: list[Any] = []
        self.tmp = tmp
        self.kind = kind
        self._count = itertools.count()
        watch_logs(node, self.items)

    def workdir(self) -> Path:
        return self.tmp / f"{self.kind}-{next(self._count)}"

    def add(self, item: Any) -> Any:
        self.items.append(item)
        return item

    def stop_all(self) -> None:
        for item in reversed(self.items):
            item.stop()
        self.items.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    # Servers a test started, and those its module or session shares with it.
    watched = [servers for node in item.listchain() for servers in node.stash.get(_WATCHED, [])]
    for servers in watched:
        for server in servers:
            read = getattr(server, "log_text", None) or getattr(server, "log", None)
            if callable(read):
                report.sections.append((f"log of {server!r}", read()[-LOG_TAIL_CHARS:]))


# --- upstream resolvers -------------------------------------------------------------------


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One unbound serving example.test. (see tests/harness/upstream.py) for the session."""
    _require(UNBOUND)
    server = start_unbound(tmp_path_factory.mktemp("unbound"))
    yield server
    server.stop()


@pytest.fixture
def upstream_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable]:
    """start(**kwargs) -> Server: a private unbound a test may stop or kill."""
    _require(UNBOUND)
    started = Started(request.node, tmp_path, "unbound")

    def start(**kwargs: Any) -> Server:
        return started.add(start_unbound(started.workdir(), **kwargs))

    yield start
    started.stop_all()


@pytest.fixture
def dnsmasq_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable]:
    """start(**kwargs) -> Server: dnsmasq serving the small DNSMASQ_* zone."""
    _require(DNSMASQ)
    started = Started(request.node, tmp_path, "dnsmasq")

    def start(**kwargs: Any) -> Server:
        return started.add(start_dnsmasq(started.workdir(), **kwargs))

    yield start
    started.stop_all()


@pytest.fixture
def dnsmasq_forwarder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable]:
    """start(upstream, consul, cache_size=150, **kwargs) -> Server: dnsmasq as the forwarder
    consuldns replaces (consul domain to the agent, the rest upstream)."""
    _require(DNSMASQ)
    started = Started(request.node, tmp_path, "dnsmasq-fwd")

    def start(upstream: Address, consul: Address, cache_size: int = 150, **kwargs: Any) -> Server:
        server = start_dnsmasq_forwarder(
            kwargs.pop("port", None), address_of(upstream), address_of(consul), cache_size,
            workdir=started.workdir(), **kwargs,
        )
        return started.add(server)

    yield start
    started.stop_all()


# --- Consul agent double ------------------------------------------------------------------


@pytest.fixture
def consul_double_factory(request: pytest.FixtureRequest) -> Iterator[Callable]:
    """start(catalog=None, profile="modern", **config) -> the double's handle
    (.host .port .address .pid .control .stop()); catalog defaults to catalogs.default_catalog()."""
    from tests.consul_double.process import start_double  # written alongside; import late

    started = Started(request.node, Path("."), "double")

    def start(catalog: dict | None = None, profile: str = "modern", **config: Any) -> Any:
        catalog = catalogs.default_catalog() if catalog is None else catalog
        return started.add(start_double(catalog, profile=profile, **config))

    yield start
    started.stop_all()


@pytest.fixture
def consul_double(consul_double_factory: Callable) -> Any:
    """The Consul double with the default catalog, modern profile (fresh per test)."""
    return consul_double_factory()


# --- the product --------------------------------------------------------------------------


@pytest.fixture
def consuldns_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable]:
    """start(consul=..., upstreams=..., config=None, extra_args=(), admin=False, **kw) -> ConsulDNS.

    consul defaults to the test's `consul_double` if it uses one, else to `shared_double`, and
    upstreams to [the session `upstream`]; pass them explicitly when running inside a network
    namespace (place=netns).
    """
    started = Started(request.node, tmp_path, "consuldns")
    default_double = ("consul_double" if "consul_double" in request.fixturenames
                      else "shared_double")

    def start(
        consul: Address | None = None, upstreams: list[Address] | None = None, **kwargs: Any
    ) -> ConsulDNS:
        if consul is None:
            consul = request.getfixturevalue(default_double)
        if upstreams is None:
            upstreams = [request.getfixturevalue("upstream")]
        server = start_consuldns(started.workdir(), consul=consul, upstreams=upstreams, **kwargs)
        return started.add(server)

    yield start
    started.stop_all()


# --- servers a module shares -------------------------------------------------------------
# Starting a double and consuldns costs ~0.4 s; tests that need only the default settings
# share one pair per module, each test starting from the default catalog, no faults, zeroed
# counters and an empty cache. Tests that change consuldns' settings, stop a server, or end
# with an upstream exchange still in flight (a background refresh waiting on a silent agent)
# start their own.


@pytest.fixture(scope="module")
def module_double(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The module's Consul double process; tests use it through `shared_double`."""
    from tests.consul_double.process import start_double

    double = start_double(catalogs.default_catalog())
    watch_logs(request.node, [double])
    yield double
    double.stop()


@pytest.fixture
def shared_double(module_double: Any) -> Any:
    """The module's double reset for this test: default catalog and config, no faults,
    counters at zero. A test may change its catalog, checks and faults, never stop it."""
    control = module_double.control
    control.set_catalog({**catalogs.default_catalog(), "config": {}})
    control.clear_faults()
    control.reset_counters()
    return module_double


@pytest.fixture(scope="module")
def module_consuldns(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                     module_double: Any, upstream: Server) -> Iterator[ConsulDNS]:
    """The module's `consuldns serve` (default settings, admin listener on, plus the module's
    SHARED_CONSULDNS_ARGS) on module_double and the session's unbound; tests use it through
    `shared_consuldns`."""
    workdir = tmp_path_factory.mktemp("consuldns-shared")
    server = start_consuldns(workdir, consul=module_double, upstreams=[upstream], admin=True,
                             extra_args=getattr(request.module, "SHARED_CONSULDNS_ARGS", ()))
    watch_logs(request.node, [server])
    yield server
    server.stop()


@pytest.fixture
def shared_consuldns(module_consuldns: ConsulDNS, shared_double: Any) -> ConsulDNS:
    """The module's consuldns with an empty cache, its agent reset (see shared_double)."""
    flush_cache(module_consuldns)
    return module_consuldns


def flush_cache(server: ConsulDNS) -> None:
    """POST /cache/flush on the server's admin listener."""
    status, body = http(f"{server.admin_url}/cache/flush", "POST")
    assert status == 200, body


# --- nginx and HTTP backends --------------------------------------------------------------


@pytest.fixture
def backends() -> Iterator[Callable]:
    """start(count=4, first=2, port=None) -> Backends on 127.0.0.{first}.. answering their
    own address; `.hits` counts requests per address."""
    pools: list[Backends] = []

    def start(count: int = 4, first: int = 2, port: int | None = None) -> Backends:
        pool = start_backends(count, first, port)
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.stop()


@pytest.fixture
def nginx_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable]:
    """start(resolver, **NginxSettings fields) -> Nginx proxying to http://$backend:PORT with
    `resolver RESOLVER valid=1s ipv6=off` (see NginxSettings)."""
    _require(NGINX)
    started = Started(request.node, tmp_path, "nginx")

    def start(resolver: Address, *, port: int | None = None, **settings: Any) -> Nginx:
        config = NginxSettings(resolver=address_of(resolver), **settings)
        return started.add(start_nginx(started.workdir(), config, port=port))

    yield start
    started.stop_all()


# --- network namespaces -------------------------------------------------------------------


@pytest.fixture
def netns(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Netns]:
    """A fresh network namespace (lo up, 192.0.2.1 and 2001:db8::1 on lo); where namespaces
    cannot be created it fails under CI and skips elsewhere (see missing.unavailable).
    Processes started with netns.start are stopped at the end."""
    workdir = tmp_path / "netns"
    workdir.mkdir()
    try:
        namespace = Netns.create(workdir)
    except NetnsUnavailable as exc:
        unavailable(str(exc))
    # Logs of what runs inside go into a failing test's report too.
    watch_logs(request.node, namespace.procs)
    yield namespace
    namespace.delete()


@pytest.fixture
def netns_topology(netns: Netns, tmp_path: Path) -> Callable:
    """start(catalog=None, profile="modern", double_config=None, config=None, extra_args=())
    -> NetnsTopology: unbound, the Consul double and consuldns on 127.0.0.1:53 inside `netns`
    (.getent(name) runs glibc there; .double.control works from the test)."""

    _require(UNBOUND)

    def start(**kwargs: Any) -> NetnsTopology:
        return start_netns_topology(netns, tmp_path / "topology", **kwargs)

    return start
