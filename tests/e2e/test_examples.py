"""The shipped examples work as shipped (issue 14): the example catalog in the Consul double,
and each nginx example under `nginx -t` and in front of consuldns.

To run an nginx example without root and beside other tests, only what nginx writes or binds
is moved: the pid file, temp dirs and access log under the test's directory, `listen 80` to a
free loopback port (nginx -t binds it too), and for a real run the resolver and backend port
to the test's consuldns and backends. Every other line is checked as shipped.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.client import addresses, ask
from tests.harness.nginx import (
    NGINX,
    UPSTREAM_RESOLVE_SINCE,
    foreground_lines,
    nginx_version,
    start_nginx_with,
    supports_upstream_resolve,
    temp_path_lines,
)
from tests.harness.ports import free_tcp_port

CONFIG = Path(__file__).resolve().parents[2] / "config"
EXAMPLE_CATALOG = CONFIG / "example-catalog.json"
NGINX_VARIABLE = CONFIG / "nginx" / "consul-variable.conf"
NGINX_UPSTREAM_RESOLVE = CONFIG / "nginx" / "consul-upstream-resolve.conf"
WEB_HEALTHY = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
WEB_CRITICAL = "127.0.0.9"
SINCE = ".".join(map(str, UPSTREAM_RESOLVE_SINCE))


def example_catalog() -> dict:
    return json.loads(EXAMPLE_CATALOG.read_text())


# --- the example catalog -------------------------------------------------------------------


def test_example_catalog_has_a_critical_web_instance():
    """What the next test filters out is really there."""
    catalog = example_catalog()
    node_address = {node["name"]: node["address"] for node in catalog["nodes"]}
    critical = [service for service in catalog["services"] if service["name"] == "web"
                and any(check["status"] == "critical" for check in service["checks"])]
    assert [node_address[service["node"]] for service in critical] == [WEB_CRITICAL]


def test_example_catalog_answers_web_without_the_critical_instance(consul_double_factory):
    double = consul_double_factory(example_catalog())
    reply = ask(double, "web.service.consul", edns=0)
    assert sorted(addresses(reply)) == WEB_HEALTHY


def test_example_catalog_answers_db_srv(consul_double_factory):
    double = consul_double_factory(example_catalog())
    reply = ask(double, "db.service.consul", "SRV", edns=0)
    records = [(rdata.port, str(rdata.target)) for rrset in reply.answer for rdata in rrset]
    assert records == [(5432, "node5.node.dc1.consul.")]


# --- the nginx examples --------------------------------------------------------------------


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} once in the example"
    return text.replace(old, new)


def runnable(example: Path, workdir: Path, port: int, resolver: str = "",
             backend_port: int = 0) -> str:
    """The example with its writes under `workdir`, listening on 127.0.0.1:`port`; resolver
    and backend port replaced when given."""
    text = foreground_lines(workdir) + example.read_text()
    http_lines = temp_path_lines(workdir) + f"    access_log {workdir / 'access.log'};\n"
    text = _replace_once(text, "\nhttp {\n", "\nhttp {\n" + http_lines)
    text = _replace_once(text, "listen 80;", f"listen 127.0.0.1:{port};")
    if resolver:
        text = _replace_once(text, "resolver 127.0.0.1 ", f"resolver {resolver} ")
    if backend_port:
        text = re.sub(r":8080\b", f":{backend_port}", text)
    return text


def nginx_t(text: str, workdir: Path) -> subprocess.CompletedProcess:
    """`nginx -t` on `text` with the prefix and error log in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(text)
    argv = [NGINX, "-t", "-p", f"{workdir}/", "-c", str(conf), "-e", str(workdir / "error.log")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def nginx_example(request, tmp_path: Path, nginx_server) -> Callable:
    """start(example, resolver, backend_port) -> Nginx running the example (nginx_server
    only checks that nginx is installed)."""
    started = []

    def start(example: Path, resolver: str, backend_port: int):
        workdir = tmp_path / "nginx-example"
        proxy = start_nginx_with(workdir, lambda port: runnable(
            example, workdir, port, resolver=resolver, backend_port=backend_port))
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def test_variable_example_passes_nginx_t(tmp_path, nginx_server):
    result = nginx_t(runnable(NGINX_VARIABLE, tmp_path, free_tcp_port()), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_variable_example_proxies_to_every_healthy_web_instance(
        consul_double_factory, consuldns_server, backends, nginx_example):
    dns = consuldns_server(consul=consul_double_factory(example_catalog()))
    pool = backends(count=4, first=2)
    proxy = nginx_example(NGINX_VARIABLE, dns.address, pool.port)
    seen = [proxy.get() for _ in range(40)]
    assert [status for status, _, _ in seen] == [200] * 40
    assert sorted({body for _, body, _ in seen}) == WEB_HEALTHY
    # A critical instance in the answer would show as a refused connection to it.
    assert WEB_CRITICAL not in proxy.error_log()


def test_upstream_resolve_example_passes_nginx_t(tmp_path, nginx_server):
    if not supports_upstream_resolve():
        pytest.skip(f"needs nginx >= {SINCE} (`server ... resolve`); this is "
                    f"{'.'.join(map(str, nginx_version()))}: see the test below")
    result = nginx_t(runnable(NGINX_UPSTREAM_RESOLVE, tmp_path, free_tcp_port()), tmp_path)
    assert result.returncode == 0, result.stderr


def test_upstream_resolve_example_before_1_27_3_fails_only_on_resolve(tmp_path, nginx_server):
    """Older nginx rejects exactly the `resolve` parameter (the version the example names);
    with that server line alone replaced by an address, the rest of the example is valid."""
    if supports_upstream_resolve():
        pytest.skip(f"nginx >= {SINCE} accepts the example as shipped (the test above)")
    text = runnable(NGINX_UPSTREAM_RESOLVE, tmp_path, free_tcp_port())
    result = nginx_t(text, tmp_path / "as-shipped")
    line = text.splitlines().index("        server web.service.consul:8080 resolve;") + 1
    assert f'invalid parameter "resolve" in {tmp_path}/as-shipped/nginx.conf:{line}' \
        in result.stderr
    assert f">= {SINCE}" in NGINX_UPSTREAM_RESOLVE.read_text()
    without = _replace_once(text, "server web.service.consul:8080 resolve;",
                            "server 127.0.0.1:8080;")
    result = nginx_t(without, tmp_path / "without-resolve")
    assert result.returncode == 0, result.stderr


def test_upstream_resolve_example_proxies_to_every_healthy_web_instance(
        consul_double_factory, consuldns_server, backends, nginx_example):
    if not supports_upstream_resolve():
        pytest.skip(f"needs nginx >= {SINCE} (`server ... resolve`)")
    dns = consuldns_server(consul=consul_double_factory(example_catalog()))
    pool = backends(count=4, first=2)
    proxy = nginx_example(NGINX_UPSTREAM_RESOLVE, dns.address, pool.port)
    seen = [proxy.get() for _ in range(40)]
    assert sorted({body for status, body, _ in seen if status == 200}) == WEB_HEALTHY
