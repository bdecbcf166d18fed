"""The control API: counters, catalog and config changes, errors."""

from __future__ import annotations

import pytest

from tests.consul_double import DoubleControlError
from tests.consul_double_tests.dnsclient import ask, ask_wire, rcode, rdatas
from tests.consul_double_tests.httpclient import get


def test_counters_per_name_type_and_transport(make_double):
    double = make_double()
    control = double.control
    control.reset_counters()
    ask(double, "web.service.consul")
    ask(double, "WEB.service.consul.")
    ask(double, "web.service.consul", "SRV", tcp=True)
    ask(double, "www.example.com")  # refused, but received
    ask_wire(double, b"\x00\x01\x00\x00\x00\x00", timeout=0.3)  # too short: total only
    counters = control.counters()
    assert counters.total == 5
    assert counters.count("web.service.consul", "A", "udp") == 2
    assert counters.count("web.service.consul.", "SRV", "tcp") == 1
    assert counters.count("web.service.consul") == 3
    assert counters.count("www.example.com", transport="udp") == 1
    assert counters.by_key[("web.service.consul.", "A", "udp")] == 2
    control.reset_counters()
    assert control.counters().total == 0


def test_counters_include_dropped_queries(make_double):
    double = make_double()
    double.control.set_fault("drop")
    ask_wire(double, b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",
             timeout=0.3)
    assert double.control.counters().total == 1


def test_set_config_changes_answers_at_once(make_double):
    double = make_double()
    double.control.set_config(only_passing=True, node_ttl="9s")
    assert set(rdatas(ask(double, "health.service.consul").answer)) == {"10.0.0.1"}
    assert ask(double, "node1.node.consul").answer[0].ttl == 9


def test_set_catalog_replaces_everything(make_double):
    double = make_double()
    double.control.set_catalog({"nodes": [{"name": "solo", "address": "10.7.0.1"}],
                                "services": [{"name": "only", "node": "solo", "port": 1}]})
    assert rdatas(ask(double, "only.service.consul").answer) == ["10.7.0.1"]
    assert rcode(ask(double, "web.service.consul")) == "NXDOMAIN"
    state = double.control.catalog()
    assert state["profile"] == "modern" and [n["name"] for n in state["nodes"]] == ["solo"]


@pytest.mark.parametrize("call", [
    lambda c: c.register_service("web", "no-such-node", port=1),
    lambda c: c.deregister_service("no-such-id"),
    lambda c: c.deregister_node("no-such-node"),
    lambda c: c.set_check("sideways", service_id="web-1"),
    lambda c: c.set_check("critical"),
    lambda c: c.set_config(no_such_key=1),
    lambda c: c.set_config(node_ttl="soon"),
    lambda c: c.set_fault("earthquake"),
    lambda c: c.register_node("x", "10.0.0.1", colour="blue"),
    lambda c: c.update_service("web-1", id="web-9"),
    lambda c: c.update_service("no-such-id", port=1),
    lambda c: c.update_service("web-1", tags="v1"),
    lambda c: c.update_node("node1", name="node9"),
    lambda c: c.set_http_config(no_such_key=1),
    lambda c: c.set_http_config(max_conns_per_client=-1),
    lambda c: c.set_http_config(acl_tokens=["web"]),
    lambda c: c.restore_snapshot(index=0),
    lambda c: c.set_fault("dns_lag", delay=-1),
])
def test_bad_control_requests_are_refused_and_change_nothing(make_double, call):
    double = make_double()
    before = double.control.catalog(), double.control.http_config()
    with pytest.raises(DoubleControlError):
        call(double.control)
    assert (double.control.catalog(), double.control.http_config()) == before


def test_health_endpoint(make_double):
    assert make_double("0.6.4").control.health() == {"ok": True, "profile": "0.6.4"}


def test_edits_and_http_settings_round_trip(make_double):
    double = make_double()
    control = double.control
    control.update_service("web-1", tags=["v9"], meta={"k": "v"})
    control.set_check("warning", service_id="web-1", output="slow")
    control.update_node("node2", meta={"rack": "r2"})
    control.set_http_config(max_conns_per_client=5, check_update_interval="2s",
                            acl_tokens={"t": ["web"]}, acl_default_token="t")
    state = control.catalog()
    web1 = next(s for s in state["services"] if s["id"] == "web-1")
    assert (web1["tags"], web1["meta"]) == (["v9"], {"k": "v"})
    assert web1["checks"] == [{"id": "service:web-1", "status": "warning", "output": "slow"}]
    assert next(n for n in state["nodes"] if n["name"] == "node2")["meta"]["rack"] == "r2"
    settings = control.http_config()
    assert (settings["max_conns_per_client"], settings["check_update_interval"]) == (5, "2s")
    assert (settings["acl_tokens"], settings["acl_default_token"]) == ({"t": ["web"]}, "t")


def test_reset_counters_also_resets_http_counters(make_double):
    double = make_double()
    get(double, "/v1/status/leader")
    assert double.control.http_counters().count("status_leader") == 1
    double.control.reset_counters()
    counters = double.control.http_counters()
    assert counters.count() == 0 and counters.max_connections_total == 0
