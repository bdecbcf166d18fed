"""Checklist 9: UDP trimming, silent by default; TCP gets everything; a_record_limit."""

from __future__ import annotations

import dns.message

from tests.consul_double_tests.catalogs import BIG_COUNT
from tests.consul_double_tests.dnsclient import ask, ask_wire, flags, make, rcode, rdatas, records, soa_only

BIG = "big.service.consul"


def wire_size(double, name, qtype="A", **kwargs) -> tuple[dns.message.Message, int]:
    """The reply and its size as sent (dnspython would re-encode it differently)."""
    wire = ask_wire(double, make(name, qtype, **kwargs).to_wire())
    return dns.message.from_wire(wire), len(wire)


def test_udp_without_edns_gets_three_answers_and_no_tc(double):
    for qtype in ("A", "SRV"):
        reply, size = wire_size(double, BIG, qtype)
        assert len(rdatas(reply.answer)) == 3, qtype
        assert size <= 512 and "TC" not in flags(reply)


def test_tcp_gets_every_answer(double):
    assert len(rdatas(ask(double, BIG, tcp=True).answer)) == BIG_COUNT
    srv = ask(double, BIG, "SRV", tcp=True)
    assert len(rdatas(srv.answer)) == BIG_COUNT and len(rdatas(srv.additional, "A")) == BIG_COUNT


def test_enable_truncate_sets_tc_only_when_something_was_cut(make_double):
    for profile in ("modern", "0.6.4"):
        double = make_double(profile, enable_truncate=True)
        reply = ask(double, BIG)
        assert "TC" in flags(reply) and len(rdatas(reply.answer)) == 3, profile
        assert "TC" not in flags(ask(double, "web.service.consul")), profile


def test_modern_honours_the_edns_buffer_and_drops_the_count_cap(modern):
    reply = ask(modern, BIG, edns=4096)
    assert len(rdatas(reply.answer)) == BIG_COUNT and "TC" not in flags(reply)
    assert reply.edns == 0 and reply.payload == 4096


def test_edns_of_512_or_less_keeps_the_count_cap(modern):
    assert len(rdatas(ask(modern, BIG, edns=512).answer)) == 3


def test_064_ignores_edns(legacy):
    reply = ask(legacy, BIG, edns=4096)
    assert len(rdatas(reply.answer)) == 3 and reply.edns == -1


def test_modern_trims_to_the_client_buffer_minus_8_and_keeps_additional_in_sync(modern):
    reply, size = wire_size(modern, BIG, "SRV", edns=700)
    answers = rdatas(reply.answer)
    assert 1 <= len(answers) < BIG_COUNT and size <= 700 - 8
    targets = {a.split()[3] for a in answers}
    assert {r[0] for r in records(reply.additional)} == targets
    assert len(rdatas(reply.additional, "A")) == len(targets)
    # syncExtra keeps one RR per target: the node-meta TXT and the OPT record go.
    assert not rdatas(reply.additional, "TXT") and reply.edns == -1


def test_keep_opt_when_trimmed_models_an_agent_that_keeps_the_opt(make_double):
    """Consul 1.10+: a silently trimmed reply still carries the OPT, counted in its size."""
    double = make_double(keep_opt_when_trimmed=True)
    reply, size = wire_size(double, BIG, "SRV", edns=700)
    answers = rdatas(reply.answer)
    assert 1 <= len(answers) < BIG_COUNT and size <= 700 - 8 and "TC" not in flags(reply)
    assert reply.edns == 0 and reply.payload == 700
    targets = {a.split()[3] for a in answers}
    assert {r[0] for r in records(reply.additional)} == targets  # the OPT is not a record here


def test_modern_udp_answer_limit(make_double):
    assert len(rdatas(ask(make_double(udp_answer_limit=5), BIG).answer)) == 5
    assert len(rdatas(ask(make_double(udp_answer_limit=20), BIG).answer)) == 8  # capped
    assert len(rdatas(ask(make_double("0.6.4", udp_answer_limit=5), BIG).answer)) == 3


def test_modern_a_record_limit_caps_addresses_on_udp_and_tcp_but_not_srv(make_double):
    double = make_double(a_record_limit=2)
    assert len(rdatas(ask(double, BIG).answer)) == 2
    assert len(rdatas(ask(double, BIG, tcp=True).answer)) == 2
    assert len(rdatas(ask(double, BIG, "SRV", tcp=True).answer)) == BIG_COUNT


def test_modern_count_cap_keeps_additional_in_sync(modern, make_double):
    # 20 instances (the byte limit bites too), and 4 whose records all fit in 512 bytes.
    lean = make_double(enable_additional_node_meta_txt=False)
    for double, name in ((modern, BIG), (lean, "consul.service.consul")):
        reply = ask(double, name, "SRV")
        targets = {a.split()[3] for a in rdatas(reply.answer)}
        assert len(targets) == 3 and {r[0] for r in records(reply.additional)} == targets


def test_064_srv_trim_keeps_additional_in_sync_by_default(legacy):
    reply = ask(legacy, BIG, "SRV")
    targets = {a.split()[3] for a in rdatas(reply.answer)}
    assert len(targets) == 3 and {r[0] for r in records(reply.additional)} == targets


def test_064_srv_trim_bug_mode_returns_no_answer_and_a_full_additional(make_double):
    """Issue #1931: answers trimmed to zero, every Additional record left, SOA, NOERROR."""
    double = make_double("0.6.4", srv_trim_bug=True)
    reply = ask(double, BIG, "SRV")
    assert rcode(reply) == "NOERROR" and not reply.answer and soa_only(reply)
    assert len(rdatas(reply.additional, "A")) == BIG_COUNT
    assert len(rdatas(ask(double, "web.service.consul", "SRV").answer)) == 3  # small: fine


def test_modern_sizes_uncompressed_when_the_count_cap_cut(make_double):
    """Names long enough that 3 answers fit compressed but not uncompressed in 504 bytes."""
    node = "n" * 60
    catalog = {"nodes": [{"name": f"{node}{i}", "address": f"10.5.0.{i}"} for i in range(5)],
               "services": [{"id": f"long-{i}", "name": "long", "node": f"{node}{i}", "port": 1}
                            for i in range(5)]}
    double = make_double("modern", catalog, enable_additional_node_meta_txt=False)
    reply = ask(double, "long.service.consul", "SRV")
    assert len(rdatas(reply.answer)) == 2  # three would take 664 bytes uncompressed
    uncut = make_double("modern", {**catalog, "services": catalog["services"][:3]},
                        enable_additional_node_meta_txt=False)
    assert len(rdatas(ask(uncut, "long.service.consul", "SRV").answer)) == 3  # sized compressed
