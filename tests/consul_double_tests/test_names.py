"""Checklist 4: every query form parses as Consul parses it, per profile."""

from __future__ import annotations

import pytest

from tests.consul_double_tests.dnsclient import ask, rcode, rdatas, records, soa_only

WEB = {"10.0.0.1", "10.0.0.2", "192.0.2.10"}


@pytest.mark.parametrize("name", [
    "web.service.consul", "web.service.dc1.consul", "WEB.Service.Consul", "web.service.consul.",
])
def test_service_names(double, name):
    reply = ask(double, name)
    assert rcode(reply) == "NOERROR" and set(rdatas(reply.answer)) == WEB


@pytest.mark.parametrize("name, expected", [
    ("v1.web.service.consul", {"10.0.0.1", "192.0.2.10"}),
    ("V2.web.service.consul", {"10.0.0.2"}),
    ("a.b.web.service.consul", {"10.0.0.1"}),  # a tag containing a dot
])
def test_tag_filters(double, name, expected):
    assert set(rdatas(ask(double, name).answer)) == expected


def test_unknown_tag_is_nxdomain(double):
    reply = ask(double, "v9.web.service.consul")
    assert rcode(reply) == "NXDOMAIN" and soa_only(reply)


@pytest.mark.parametrize("name, count", [
    ("_web._tcp.service.consul", 3),  # _tcp means no tag filter
    ("_web._v1.service.consul", 2),
    ("_web._tcp.service.dc1.consul", 3),
])
def test_rfc2782_srv_names(double, name, count):
    reply = ask(double, name, "SRV")
    assert rcode(reply) == "NOERROR" and len(rdatas(reply.answer, "SRV")) == count


def test_modern_srv_names_need_no_service_label(modern, legacy):
    assert len(rdatas(ask(modern, "_web._tcp.consul", "SRV").answer)) == 3
    assert len(rdatas(ask(modern, "_web._tcp.dc1.consul", "SRV").answer)) == 3
    old = ask(legacy, "_web._tcp.consul", "SRV")
    assert rcode(old) == "NXDOMAIN" and soa_only(old)
    # Only for SRV: the same name asked as A is not a service name.
    assert rcode(ask(modern, "_web._tcp.consul", "A")) == "NXDOMAIN"


@pytest.mark.parametrize("name, address", [
    ("node1.node.consul", "10.0.0.1"),
    ("NODE1.node.dc1.consul", "10.0.0.1"),
    ("foo.bar.node.consul", "10.0.0.9"),  # node names may contain dots
    ("remote1.node.dc2.consul", "10.1.0.1"),
])
def test_node_names(double, name, address):
    reply = ask(double, name)
    assert rcode(reply) == "NOERROR" and rdatas(reply.answer) == [address]


def test_modern_accepts_the_dc_suffix_form(modern):
    assert set(rdatas(ask(modern, "web.service.dc1.dc.consul").answer)) == WEB
    assert rdatas(ask(modern, "node1.node.dc1.dc.consul").answer) == ["10.0.0.1"]


def test_extra_labels_after_the_datacenter(modern, legacy):
    """Modern allows one locality label; 0.6.4 keeps reading datacenters, the innermost wins."""
    name = "web.service.dc1.extra.more.consul"
    reply = ask(modern, name)
    assert rcode(reply) == "NXDOMAIN" and soa_only(reply)
    assert set(rdatas(ask(legacy, name).answer)) == WEB


@pytest.mark.parametrize("name", [
    "consul.", "node.consul", "service.consul", "query.consul", "foo.consul", "x.y.z.consul",
])
def test_apex_and_unparseable_names_are_nxdomain_with_soa(double, name):
    reply = ask(double, name)
    assert rcode(reply) == "NXDOMAIN" and soa_only(reply) and not reply.answer


def test_prepared_queries(double):
    reply = ask(double, "web-q.query.consul")
    assert set(rdatas(reply.answer)) == WEB
    assert {r[1] for r in records(reply.answer)} == {7}  # the query's own DNS TTL
    assert set(rdatas(ask(double, "v1-q.query.consul").answer)) == {"10.0.0.1", "192.0.2.10"}
    assert len(rdatas(ask(double, "web-q.query.dc1.consul", "SRV").answer)) == 3


def test_unknown_prepared_query_is_nxdomain(double):
    reply = ask(double, "nope.query.consul")
    assert rcode(reply) == "NXDOMAIN" and soa_only(reply)


def test_modern_rfc2782_prepared_query_name(modern, legacy):
    assert len(rdatas(ask(modern, "_web-q._tcp.query.consul", "SRV").answer)) == 3
    assert rcode(ask(legacy, "_web-q._tcp.query.consul", "SRV")) == "NXDOMAIN"


def test_addr_names_decode_the_address_in_modern(modern):
    reply = ask(modern, "c000020a.addr.dc1.consul")
    assert records(reply.answer) == [("c000020a.addr.dc1.consul.", 0, "A", "192.0.2.10")]
    v6 = ask(modern, "20010db8000000000000000000000005.addr.consul", "AAAA")
    assert rdatas(v6.answer) == ["2001:db8::5"]


def test_addr_of_the_other_family_goes_to_additional(modern):
    reply = ask(modern, "c000020a.addr.consul", "AAAA")
    assert rcode(reply) == "NOERROR" and not reply.answer and not reply.authority
    assert rdatas(reply.additional, "A") == ["192.0.2.10"]


@pytest.mark.parametrize("name", ["zz00020a.addr.consul", "c000020.addr.consul", "a.b.addr.consul"])
def test_bad_addr_names_are_nxdomain(modern, name):
    assert rcode(ask(modern, name)) == "NXDOMAIN"


def test_addr_names_do_not_exist_in_064(legacy):
    reply = ask(legacy, "c000020a.addr.dc1.consul")
    assert rcode(reply) == "NXDOMAIN" and soa_only(reply)
