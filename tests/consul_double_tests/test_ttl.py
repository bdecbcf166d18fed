"""Checklist 7: TTL 0 by default; node_ttl and the service_ttl map."""

from __future__ import annotations

from tests.consul_double_tests.dnsclient import ask, records

TTLS = {"web": "20s", "we*": "30s", "w*": "40s", "*": "5s"}


def ttls(double, name, qtype="A", section="answer"):
    return {r[1] for r in records(getattr(ask(double, name, qtype), section))}


def test_everything_defaults_to_ttl_0(double):
    assert ttls(double, "web.service.consul") == {0}
    assert ttls(double, "web.service.consul", "SRV") == {0}
    assert ttls(double, "web.service.consul", "SRV", "additional") == {0}
    assert ttls(double, "node1.node.consul") == {0}
    assert ttls(double, "nosuch.service.consul", "A", "authority") == {0}
    assert ttls(double, "1.0.0.10.in-addr.arpa", "PTR") == {0}


def test_modern_service_ttl_exact_then_longest_prefix_then_star(make_double):
    double = make_double("modern", node_ttl="10s", service_ttl=TTLS)
    assert ttls(double, "web.service.consul") == {20}
    assert ttls(double, "weighted.service.consul") == {30}  # "we*" beats "w*"
    assert ttls(double, "health.service.consul") == {5}
    assert ttls(double, "web.service.consul", "SRV", "additional") == {20}
    assert ttls(double, "node1.node.consul") == {10}
    assert ttls(double, "node1.node.consul", "A", "additional") == {10}  # meta TXT
    assert ttls(double, "c000020a.addr.consul") == {10}


def test_064_service_ttl_is_exact_then_star_only(make_double):
    double = make_double("0.6.4", node_ttl="10s", service_ttl=TTLS)
    assert ttls(double, "web.service.consul") == {20}
    assert ttls(double, "weighted.service.consul") == {5}
    assert ttls(double, "node1.node.consul") == {10}


def test_node_ttl_is_not_used_for_services(make_double):
    for profile in ("modern", "0.6.4"):
        double = make_double(profile, node_ttl="10s")
        assert ttls(double, "web.service.consul") == {0}
        assert ttls(double, "web.service.consul", "SRV", "additional") == {0}


def test_prepared_query_ttl_falls_back_to_service_ttl(make_double):
    double = make_double("modern", service_ttl={"web": "20s"})
    assert ttls(double, "web-q.query.consul") == {7}
    assert ttls(double, "v1-q.query.consul") == {20}
