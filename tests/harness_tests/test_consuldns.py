"""The consuldns_server fixture starts the product per the CLI contract and stops it by PID."""

from __future__ import annotations

import signal
import socket
import sys

import dns.rcode
import pytest

from tests.harness import upstream as zone
from tests.harness.consuldns import serve_argv, start_consuldns
from tests.harness_tests.dnsutil import answer_rrset, ask, values

CONSUL_STANDIN = ("--host-record=web.service.consul,127.0.0.7",)


def test_serve_argv_follows_the_cli_contract(tmp_path):
    argv = serve_argv("127.0.0.1:5353", "127.0.0.1:8600", ["127.0.0.1:53", "[::1]:53"],
                      config_path=tmp_path / "c.toml", admin="127.0.0.1:9000",
                      extra_args=["--log-queries"])
    assert argv == [sys.executable, "-m", "consuldns", "serve",
                    "--config", str(tmp_path / "c.toml"),
                    "--listen", "127.0.0.1:5353", "--consul", "127.0.0.1:8600",
                    "--upstream", "127.0.0.1:53", "--upstream", "[::1]:53",
                    "--admin", "127.0.0.1:9000", "--log-queries"]


def test_refuses_to_start_without_upstreams(tmp_path):
    with pytest.raises(ValueError, match="upstream"):
        start_consuldns(tmp_path, consul="127.0.0.1:8600", upstreams=[])


def test_forwards_to_upstream_and_consul(upstream, dnsmasq_server, consuldns_server):
    consul = dnsmasq_server(extra_args=CONSUL_STANDIN)
    server = consuldns_server(consul=consul, upstreams=[upstream])
    www = ask(server, zone.WWW.name)
    assert values(answer_rrset(www, zone.WWW.name, "A")) == set(zone.WWW.values)
    web = ask(server, "web.service.consul.")
    assert values(answer_rrset(web, "web.service.consul.", "A")) == {"127.0.0.7"}
    assert server.stop(signal.SIGTERM) == 0


def test_config_file_is_written_and_passed(upstream, dnsmasq_server, consuldns_server):
    consul = dnsmasq_server(extra_args=CONSUL_STANDIN)
    server = consuldns_server(consul=consul, upstreams=[upstream], user="root",
                              config="# written by the fixture\n")
    assert (server.workdir / "consuldns.toml").exists()
    assert "--config" in server.proc.args
    assert ask(server, zone.NX_NAME).rcode() == dns.rcode.NXDOMAIN
    server.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=5) == 0
    assert server.stop() == 0  # already gone: stop() just reports the exit code


def test_admin_port_is_waited_for(upstream, dnsmasq_server, consuldns_server):
    consul = dnsmasq_server(extra_args=CONSUL_STANDIN)
    server = consuldns_server(consul=consul, upstreams=[upstream], admin=True, timeout=3)
    socket.create_connection((server.host, server.admin_port), timeout=2).close()
    assert server.admin_url == f"http://127.0.0.1:{server.admin_port}"


def test_readiness_probe_never_reaches_the_upstream(upstream_factory, dnsmasq_server,
                                                    consuldns_server):
    private = upstream_factory(extra="log-queries: yes")
    consul = dnsmasq_server(extra_args=("--log-queries",))
    consuldns_server(consul=consul, upstreams=[private])
    assert "readiness" not in private.log_text()
    assert "readiness" not in consul.log_text()
