"""Checklist 5 and 6: what services and nodes answer, record by record."""

from __future__ import annotations

import dns.message

from tests.consul_double_tests.dnsclient import ask, rcode, rdatas, records, soa_only

NODE1_META = {'"consul-network-segment="', '"rack=r1"', '"plain"', '"a`=b=c``d"'}


def test_address_records_are_named_by_the_question_and_have_ttl_0(double):
    reply = ask(double, "web.service.consul")
    assert sorted(records(reply.answer)) == [
        ("web.service.consul.", 0, "A", "10.0.0.1"),
        ("web.service.consul.", 0, "A", "10.0.0.2"),
        ("web.service.consul.", 0, "A", "192.0.2.10"),  # service address overrides node's
    ]
    assert not reply.authority  # positive answers carry no SOA


def test_duplicate_addresses_are_removed_but_srv_keeps_each_port(double):
    raw = ask(double, "dup.service.consul")
    assert rdatas(raw.answer) == ["10.0.0.1"]
    srv = ask(double, "dup.service.consul", "SRV")
    assert sorted(rdatas(srv.answer)) == ["1 1 9001 node1.node.dc1.consul.",
                                          "1 1 9002 node1.node.dc1.consul."]


def test_modern_srv_targets_and_additional(modern):
    reply = ask(modern, "web.service.consul", "SRV")
    assert sorted(records(reply.answer)) == [
        ("web.service.consul.", 0, "SRV", "1 1 8080 node1.node.dc1.consul."),
        ("web.service.consul.", 0, "SRV", "1 1 8080 node2.node.dc1.consul."),
        ("web.service.consul.", 0, "SRV", "1 1 8081 c000020a.addr.dc1.consul."),
    ]
    extra = records(reply.additional)
    assert {r for r in extra if r[2] == "A"} == {
        ("node1.node.dc1.consul.", 0, "A", "10.0.0.1"),
        ("node2.node.dc1.consul.", 0, "A", "10.0.0.2"),
        ("c000020a.addr.dc1.consul.", 0, "A", "192.0.2.10"),
    }
    txt = {(r[0], r[3]) for r in extra if r[2] == "TXT"}
    assert {t for n, t in txt if n == "node1.node.dc1.consul."} == NODE1_META
    assert ("node3.node.dc1.consul.", '"consul-network-segment="') in txt
    assert not reply.authority


def test_064_srv_targets_are_node_names_even_with_a_service_address(legacy):
    reply = ask(legacy, "web.service.consul", "SRV")
    assert sorted(rdatas(reply.answer)) == ["1 1 8080 node1.node.dc1.consul.",
                                            "1 1 8080 node2.node.dc1.consul.",
                                            "1 1 8081 node3.node.dc1.consul."]
    assert sorted(records(reply.additional)) == [
        ("node1.node.dc1.consul.", 0, "A", "10.0.0.1"),
        ("node2.node.dc1.consul.", 0, "A", "10.0.0.2"),
        ("node3.node.dc1.consul.", 0, "A", "192.0.2.10"),  # service address, node's name
    ]


def test_srv_target_datacenter_is_the_queried_one(double):
    reply = ask(double, "api.service.dc2.consul", "SRV")
    assert rdatas(reply.answer) == ["1 1 9000 remote1.node.dc2.consul."]
    assert rdatas(reply.additional, "A") == ["10.1.0.1"]


def test_srv_weights_follow_health_in_modern_only(modern, legacy):
    weights = {r.split()[3]: r.split()[1] for r in rdatas(ask(modern, "weighted.service.consul",
                                                              "SRV").answer)}
    assert weights == {"node1.node.dc1.consul.": "10", "node2.node.dc1.consul.": "3"}
    old = {r.split()[1] for r in rdatas(ask(legacy, "weighted.service.consul", "SRV").answer)}
    assert old == {"1"}


def test_any_returns_addresses_never_srv(double):
    reply = ask(double, "web.service.consul", "ANY")
    assert {r[2] for r in records(reply.answer)} == {"A"} and len(reply.answer[0]) == 3


def test_ipv6_service_answers_aaaa_and_nodata_for_a(double):
    assert rdatas(ask(double, "v6svc.service.consul", "AAAA").answer) == ["2001:db8::5"]
    reply = ask(double, "v6svc.service.consul", "A")
    assert rcode(reply) == "NOERROR" and not reply.answer and soa_only(reply)


def test_service_with_wrong_qtype_is_nodata_with_soa(double):
    for name, qtype in [("web.service.consul", "MX"), ("web.service.consul", "CNAME"),
                        ("dup.service.consul", "AAAA")]:
        reply = ask(double, name, qtype)
        assert rcode(reply) == "NOERROR" and not reply.answer and soa_only(reply), qtype


def test_modern_aaaa_falls_back_to_the_nodes_ipv6_when_the_service_ip_is_v4(modern, legacy):
    """translateAddressAccept finds no IPv6 service address, so the node's lan_ipv6 is used."""
    assert rdatas(ask(modern, "web.service.consul", "AAAA").answer) == ["fd00::3"]
    old = ask(legacy, "web.service.consul", "AAAA")
    assert not old.answer and soa_only(old)


def test_service_txt_returns_address_records_in_modern(modern, legacy):
    """makeARecord treats TXT like A (a modern quirk); 0.6.4 has nothing for TXT."""
    reply = ask(modern, "web.service.consul", "TXT")
    assert {r[2] for r in records(reply.answer)} == {"A"} and len(reply.answer[0]) == 3
    old = ask(legacy, "web.service.consul", "TXT")
    assert rcode(old) == "NOERROR" and not old.answer and soa_only(old)


def test_modern_node_answers_carry_meta_txt_in_additional(modern):
    reply = ask(modern, "node1.node.consul")
    assert records(reply.answer) == [("node1.node.consul.", 0, "A", "10.0.0.1")]
    assert set(rdatas(reply.additional, "TXT")) == NODE1_META
    assert {r[0] for r in records(reply.additional)} == {"node1.node.consul."}


def test_node_meta_txt_in_additional_can_be_switched_off(make_double):
    double = make_double(enable_additional_node_meta_txt=False)
    reply = ask(double, "node1.node.consul")
    assert rdatas(reply.answer) == ["10.0.0.1"] and not reply.additional


def test_064_node_answers_have_no_meta(legacy):
    reply = ask(legacy, "node1.node.consul")
    assert rdatas(reply.answer) == ["10.0.0.1"] and not reply.additional


def test_node_txt_and_any(modern, legacy):
    txt = ask(modern, "node1.node.consul", "TXT", tcp=True)
    assert set(rdatas(txt.answer)) == NODE1_META and not txt.additional
    any_ = ask(modern, "node1.node.consul", "ANY", tcp=True)
    assert set(rdatas(any_.answer)) == NODE1_META | {"10.0.0.1"}
    old_txt = ask(legacy, "node1.node.consul", "TXT")
    assert rcode(old_txt) == "NOERROR" and not old_txt.answer and not old_txt.authority
    assert rdatas(ask(legacy, "node1.node.consul", "ANY").answer) == ["10.0.0.1"]


def test_modern_trims_every_in_zone_udp_answer_to_three(modern):
    """Not only services: four meta TXT records of a node come back as three over UDP."""
    assert len(rdatas(ask(modern, "node1.node.consul", "TXT").answer)) == 3
    assert len(rdatas(ask(modern, "node1.node.consul", "TXT", edns=1232).answer)) == 4


def test_node_aaaa(modern, legacy):
    assert rdatas(ask(modern, "node3.node.consul", "AAAA").answer) == ["fd00::3"]  # lan_ipv6
    assert rdatas(ask(modern, "node3.node.consul", "A").answer) == ["10.0.0.3"]
    old = ask(legacy, "node3.node.consul", "AAAA")  # 0.6.4 knows only the node's address
    assert rcode(old) == "NOERROR" and not old.answer and not old.authority
    for double in (modern, legacy):
        assert rdatas(ask(double, "v6node.node.consul", "AAAA").answer) == ["2001:db8::5"]


def test_node_with_other_qtypes_is_empty_noerror_without_soa(double):
    for qtype in ("MX", "SRV", "CNAME"):
        reply = ask(double, "node1.node.consul", qtype)
        assert rcode(reply) == "NOERROR", qtype
        assert not reply.answer and not reply.authority, qtype


def test_unknown_node_is_nxdomain_with_soa(double):
    reply = ask(double, "nosuch.node.consul")
    assert rcode(reply) == "NXDOMAIN" and soa_only(reply)


def test_unknown_service_is_nxdomain_with_soa(double):
    reply = ask(double, "nosuch.service.consul", "SRV")
    assert rcode(reply) == "NXDOMAIN" and soa_only(reply) and "AA" in dns.flags.to_text(reply.flags)


def test_service_in_another_datacenter_only(double):
    assert rcode(ask(double, "api.service.consul")) == "NXDOMAIN"
    assert rdatas(ask(double, "api.service.dc2.consul").answer) == ["10.1.0.1"]
    empty_dc = ask(double, "web.service.dc3.consul")  # a known DC with nothing in it
    assert rcode(empty_dc) == "NXDOMAIN" and soa_only(empty_dc)


def test_unknown_datacenter(modern, legacy):
    reply = ask(modern, "web.service.dc9.consul")
    assert rcode(reply) == "NXDOMAIN" and soa_only(reply)
    old = ask(legacy, "web.service.dc9.consul")  # "No path to datacenter" is an RPC error
    assert rcode(old) == "SERVFAIL" and not old.authority and "AA" in dns.flags.to_text(old.flags)
    assert rcode(ask(legacy, "node1.node.dc9.consul")) == "SERVFAIL"
    assert rcode(ask(modern, "node1.node.dc9.consul")) == "NXDOMAIN"


def test_alt_domain_in_modern(make_double):
    double = make_double(alt_domain="alt.test")
    reply = ask(double, "web.service.ALT.test", "SRV")
    assert "1 1 8080 node1.node.dc1.ALT.test." in rdatas(reply.answer)
    assert "node1.node.dc1.ALT.test." in {r[0] for r in records(reply.additional)}
    missing = ask(double, "nosuch.service.alt.test")
    assert rcode(missing) == "NXDOMAIN" and records(missing.authority)[0][0] == "alt.test."
    ptr = ask(double, "1.0.0.10.in-addr.arpa", "PTR")  # PTR answers stay in the primary domain
    assert rdatas(ptr.answer) == ["node1.node.dc1.consul."]


def test_hostname_addresses_give_a_cname(double):
    for name in ("ext.service.consul", "extnode.node.consul"):
        reply = ask(double, name)
        assert rcode(reply) == "NOERROR", name
        assert records(reply.answer) == [(name + ".", 0, "CNAME", "db.example.test.")]


def test_modern_answers_cnames_only_when_no_instance_has_an_ip(modern, legacy):
    assert records(ask(modern, "mixed.service.consul").answer) == [
        ("mixed.service.consul.", 0, "A", "10.0.0.1")]
    old = {(r[2], r[3]) for r in records(ask(legacy, "mixed.service.consul").answer)}
    assert old == {("A", "10.0.0.1"), ("CNAME", "alias.example.test.")}


def test_modern_srv_target_is_the_hostname(modern):
    reply = ask(modern, "ext.service.consul", "SRV")
    assert rdatas(reply.answer) == ["1 1 5000 db.example.test."]
    assert not rdatas(reply.additional, "A")


def test_modern_resolves_cname_targets_inside_the_zone(modern):
    reply = ask(modern, "inzone.service.consul")
    assert records(reply.answer) == [
        ("inzone.service.consul.", 0, "CNAME", "node1.node.consul."),
        ("node1.node.consul.", 0, "A", "10.0.0.1"),
    ]
