"""The process wrapper and the command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.consul_double import DoubleStartError, start_double, start_in_thread
from tests.consul_double.__main__ import parse_http
from tests.consul_double.process import REPO_ROOT, answers_dns
from tests.consul_double_tests.dnsclient import ask, rdatas
from tests.consul_double_tests.httpclient import UnixHTTPConnection, get, request


def test_start_double_runs_a_process_and_stop_ends_it(tmp_path):
    double = start_double({"nodes": [{"name": "n", "address": "10.4.0.1"}]}, "0.6.4",
                          node_ttl="3s")
    try:
        assert double.address == f"127.0.0.1:{double.port}" and double.host == "127.0.0.1"
        os.kill(double.pid, 0)  # alive
        reply = ask(double, "n.node.consul")
        assert rdatas(reply.answer) == ["10.4.0.1"] and reply.answer[0].ttl == 3
        assert double.control.health()["profile"] == "0.6.4"
    finally:
        double.stop()
    assert double.proc.poll() is not None
    assert not answers_dns(double.host, double.port)


def test_a_bad_catalog_fails_fast_with_the_reason():
    with pytest.raises(DoubleStartError, match="unknown config keys"):
        start_double({}, no_such_setting=True)


def test_cli_help():
    result = subprocess.run([sys.executable, "-m", "tests.consul_double", "--help"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0 and "--catalog" in result.stdout


def test_ipv6_loopback_listener():
    double = start_in_thread({"nodes": [{"name": "n", "address": "10.4.0.1"}]}, host="::1")
    try:
        assert double.address == f"[::1]:{double.port}"
        assert rdatas(ask(double, "n.node.consul").answer) == ["10.4.0.1"]
        assert rdatas(ask(double, "n.node.consul", tcp=True).answer) == ["10.4.0.1"]
        assert double.control.counters().total == 2
    finally:
        double.stop()


def test_start_double_serves_the_http_api(tmp_path):
    unix = tmp_path / "agent.sock"
    double = start_double({"nodes": [{"name": "n", "address": "10.4.0.1"}],
                           "services": [{"name": "s", "node": "n", "port": 1}],
                           "http": {"max_conns_per_client": 7}}, http_unix=unix)
    try:
        assert double.http_address == f"127.0.0.1:{double.http_port}"
        assert double.http_url == f"http://127.0.0.1:{double.http_port}"
        assert double.http_unix == str(unix)
        assert [e["Node"]["Node"] for e in get(double, "/v1/health/service/s").json()] == ["n"]
        self_body = get(double, "/v1/agent/self").json()
        assert self_body["DebugConfig"]["HTTPMaxConnsPerClient"] == 7
        over_unix = request(UnixHTTPConnection(str(unix)), "/v1/status/leader")
        assert (over_unix.status, over_unix.body) == (200, b'"127.0.0.1:8300"')
    finally:
        double.stop()
    assert not unix.exists()


def test_start_double_without_http():
    double = start_double({}, http_port=None)
    try:
        assert double.http_address is None and double.http_port is None
    finally:
        double.stop()


@pytest.mark.parametrize("values, expected", [
    (["127.0.0.1:8500"], (("127.0.0.1", 8500), None)),
    (["[::1]:0", "unix:///tmp/a.sock"], (("::1", 0), "/tmp/a.sock")),
    ([], (None, None)),
])
def test_cli_http_addresses(values, expected):
    assert parse_http(values) == expected


@pytest.mark.parametrize("values", [["127.0.0.1"], ["unix://"], ["1.2.3.4:1", "1.2.3.4:2"],
                                    ["unix:///a", "unix:///b"]])
def test_cli_rejects_bad_http_addresses(values):
    with pytest.raises(ValueError):
        parse_http(values)
