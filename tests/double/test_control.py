"""The control API: counters, catalog and config changes, errors."""

from __future__ import annotations

import pytest

from tests.consul_double import DoubleControlError
from tests.double.dnsclient import ask, ask_wire, rcode, rdatas


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
])
def test_bad_control_requests_are_refused_and_change_nothing(make_double, call):
    double = make_double()
    before = double.control.catalog()
    with pytest.raises(DoubleControlError):
        call(double.control)
    assert double.control.catalog() == before


def test_health_endpoint(make_double):
    assert make_double("0.6.4").control.health() == {"ok": True, "profile": "0.6.4"}
