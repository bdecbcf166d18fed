"""Checklist 5 and 13: health filtering, and live changes through the control API."""

from __future__ import annotations

from tests.consul_double_tests import catalogs
from tests.consul_double_tests.dnsclient import ask, rcode, rdatas, soa_only


def addresses(double, name="health.service.consul"):
    return set(rdatas(ask(double, name, tcp=True).answer))


def test_critical_maintenance_and_failed_nodes_are_excluded(double):
    # h-pass (node1) and h-warn (node2) stay; h-crit, h-maint and h-sick (node serfHealth) go.
    assert addresses(double) == {"10.0.0.1", "10.0.0.2"}


def test_a_critical_node_check_drops_every_service_on_the_node(double):
    reply = ask(double, "db.service.consul")
    assert rcode(reply) == "NXDOMAIN" and soa_only(reply)


def test_only_passing_also_drops_warning(make_double):
    for profile in ("modern", "0.6.4"):
        assert addresses(make_double(profile, only_passing=True)) == {"10.0.0.1"}


def test_instances_without_checks_are_included(double):
    assert addresses(double, "web.service.consul") == {"10.0.0.1", "10.0.0.2", "192.0.2.10"}


def test_prepared_queries_use_their_own_only_passing(make_double):
    catalog = catalogs.base()
    catalog["config"]["prepared_queries"]["hq"] = {"service": "health", "only_passing": True}
    double = make_double("modern", catalog)
    assert addresses(double, "hq.query.consul") == {"10.0.0.1"}
    double.control.set_config(only_passing=True)
    assert addresses(double, "web-q.query.consul") == {"10.0.0.1", "10.0.0.2", "192.0.2.10"}


def test_live_check_changes(make_double):
    double = make_double()
    control = double.control
    control.set_check("critical", service_id="web-1")
    assert addresses(double, "web.service.consul") == {"10.0.0.2", "192.0.2.10"}
    control.set_check("warning", service_id="web-1")
    assert addresses(double, "web.service.consul") == {"10.0.0.1", "10.0.0.2", "192.0.2.10"}
    control.set_check("critical", node="node2")  # serfHealth
    assert addresses(double, "web.service.consul") == {"10.0.0.1", "192.0.2.10"}
    control.set_check("passing", node="node2")
    control.set_check("maintenance", service_id="web-3")
    assert addresses(double, "web.service.consul") == {"10.0.0.1", "10.0.0.2"}


def test_maintenance_mode(make_double):
    double = make_double("0.6.4")
    double.control.set_maintenance(node="node1")
    assert addresses(double, "web.service.consul") == {"10.0.0.2", "192.0.2.10"}
    double.control.set_maintenance(node="node1", enable=False)
    double.control.set_maintenance(service_id="web-2")
    assert addresses(double, "web.service.consul") == {"10.0.0.1", "192.0.2.10"}


def test_no_healthy_instance_left_is_nxdomain_with_soa(make_double):
    for profile in ("modern", "0.6.4"):
        double = make_double(profile)
        for service_id in ("web-1", "web-2", "web-3"):
            double.control.set_check("critical", service_id=service_id)
        for qtype in ("A", "SRV"):
            reply = ask(double, "web.service.consul", qtype)
            assert rcode(reply) == "NXDOMAIN" and soa_only(reply), (profile, qtype)


def test_register_and_deregister_are_visible_on_the_next_query(make_double):
    double = make_double()
    control = double.control
    control.register_node("node9", "10.9.9.9")
    control.register_service("web", "node9", id="web-9", port=80)
    assert "10.9.9.9" in addresses(double, "web.service.consul")
    assert rdatas(ask(double, "node9.node.consul").answer) == ["10.9.9.9"]
    control.deregister_service("web-9")
    assert "10.9.9.9" not in addresses(double, "web.service.consul")
    control.register_service("fresh", "node9", port=81)
    control.deregister_node("node9")
    assert rcode(ask(double, "fresh.service.consul")) == "NXDOMAIN"
    assert rcode(ask(double, "node9.node.consul")) == "NXDOMAIN"


def test_weights_change_with_health(make_double):
    double = make_double()
    double.control.set_check("warning", service_id="w-pass")
    weights = {r.split()[1] for r in rdatas(ask(double, "weighted.service.consul", "SRV").answer)}
    assert weights == {"3"}
