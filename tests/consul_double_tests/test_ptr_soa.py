"""PTR, SOA and NS, as the agent answers them (tests/consul_double/README.md)."""

from __future__ import annotations

import time

import dns.reversename

from tests.consul_double_tests.dnsclient import ask, flags, rcode, rdatas, records, soa_only

SERVER_NAMES = {f"server{i}.node.dc1.consul." for i in range(1, 5)}
SERVER_ADDRESSES = {f"10.0.1.{i}" for i in range(1, 5)}


def test_ptr_for_a_node_address(double):
    reply = ask(double, "1.0.0.10.in-addr.arpa", "PTR")
    assert records(reply.answer) == [("1.0.0.10.in-addr.arpa.", 0, "PTR", "node1.node.dc1.consul.")]
    assert "AA" in flags(reply)


def test_ptr_for_an_ipv6_node_address(double):
    name = dns.reversename.from_address("2001:db8::5").to_text()
    assert rdatas(ask(double, name, "PTR").answer) == ["v6node.node.dc1.consul."]


def test_ptr_is_answered_whatever_the_qtype(double):
    assert rdatas(ask(double, "1.0.0.10.in-addr.arpa", "A").answer) == ["node1.node.dc1.consul."]


def test_ptr_for_a_service_address(modern, legacy):
    reply = ask(modern, "10.2.0.192.in-addr.arpa", "PTR")
    assert rdatas(reply.answer) == ["web.service.dc1.consul."]
    old = ask(legacy, "10.2.0.192.in-addr.arpa", "PTR")  # 0.6.4 only knows node addresses
    assert rcode(old) == "SERVFAIL"


def test_ptr_for_an_unknown_address(modern, legacy):
    reply = ask(modern, "9.9.9.9.in-addr.arpa", "PTR")
    assert rcode(reply) == "NXDOMAIN" and "AA" in flags(reply)
    assert records(reply.authority)[0][:3] == ("consul.", 0, "SOA") and soa_only(reply)
    old = ask(legacy, "9.9.9.9.in-addr.arpa", "PTR")  # falls through to zero recursors
    assert rcode(old) == "SERVFAIL" and "RA" in flags(old) and "AA" not in flags(old)


def test_ptr_ttl_is_0_even_with_node_ttl(make_double):
    double = make_double(node_ttl="30s")
    assert records(ask(double, "1.0.0.10.in-addr.arpa", "PTR").answer)[0][1] == 0
    assert records(ask(double, "node1.node.consul").answer)[0][1] == 30


def soa_fields(reply, section="authority"):
    (name, ttl, _, text), = records(getattr(reply, section), "SOA")
    mname, rname, serial, refresh, retry, expire, minimum = text.split()
    return name, ttl, mname, rname, int(serial), int(refresh), int(retry), int(expire), int(minimum)


def test_soa_record_content(modern, legacy):
    now = int(time.time())
    name, ttl, mname, rname, serial, *timers = soa_fields(ask(modern, "nosuch.service.consul"))
    assert (name, ttl, mname, rname, timers) == (
        "consul.", 0, "ns.consul.", "hostmaster.consul.", [3600, 600, 86400, 0])
    assert abs(serial - now) <= 5  # the serial is the Unix time; never compare it exactly
    old = soa_fields(ask(legacy, "nosuch.service.consul"))
    assert old[:4] == ("consul.", 0, "ns.consul.", "postmaster.consul.")
    assert list(old[5:]) == [3600, 600, 86400, 0]


def test_soa_min_ttl_is_configurable_in_modern_only(make_double):
    modern = make_double("modern", soa={"min_ttl": 30, "refresh": 100})
    _, ttl, _, _, _, refresh, _, _, minimum = soa_fields(ask(modern, "nosuch.service.consul"))
    assert (ttl, refresh, minimum) == (30, 100, 30)
    legacy = make_double("0.6.4", soa={"min_ttl": 30})
    assert soa_fields(ask(legacy, "nosuch.service.consul"))[1] == 0


def test_modern_soa_query_for_any_name_in_the_zone(modern):
    for name in ("consul.", "nosuch.service.consul", "x.y.z.consul"):
        reply = ask(modern, name, "SOA")
        assert rcode(reply) == "NOERROR", name
        assert [r[2] for r in records(reply.answer)] == ["SOA"]
        ns = records(reply.authority, "NS")
        assert len(ns) == 3 and {r[0] for r in ns} == {"consul."}
        assert {r[3] for r in ns} <= SERVER_NAMES
        glue = records(reply.additional, "A")
        assert {(r[0], r[3]) for r in glue} == {(r[3], "10.0.1." + r[3][6]) for r in ns}


def test_modern_ns_query(modern):
    reply = ask(modern, "consul.", "NS")
    assert rcode(reply) == "NOERROR" and len(rdatas(reply.answer, "NS")) == 3
    assert set(rdatas(reply.additional, "A")) <= SERVER_ADDRESSES
    assert not reply.authority
    assert rcode(ask(modern, "whatever.node.consul", "NS")) == "NOERROR"


def test_ns_and_glue_ttl_is_node_ttl(make_double):
    double = make_double(node_ttl="12s")
    reply = ask(double, "consul.", "NS")
    assert {r[1] for r in records(reply.answer) + records(reply.additional)} == {12}


def test_064_apex_is_nxdomain_for_every_qtype(legacy):
    for qtype in ("SOA", "NS", "A"):
        reply = ask(legacy, "consul.", qtype)
        assert rcode(reply) == "NXDOMAIN", qtype
        assert {r[2] for r in records(reply.authority)} == {"SOA"}
        assert not reply.answer


def test_negative_answers_are_authoritative_with_soa_in_authority(double):
    for name, qtype, code in [("nosuch.service.consul", "A", "NXDOMAIN"),
                              ("web.service.consul", "MX", "NOERROR")]:
        reply = ask(double, name, qtype)
        assert rcode(reply) == code and "AA" in flags(reply) and soa_only(reply)
