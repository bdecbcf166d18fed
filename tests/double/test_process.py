"""The process wrapper and the command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.consul_double import DoubleStartError, start_double, start_in_thread
from tests.consul_double.process import REPO_ROOT, answers_dns
from tests.double.dnsclient import ask, rdatas


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
