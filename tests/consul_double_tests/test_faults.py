"""Checklist 11: failure injection (latency, drop, lost servers, closed TCP)."""

from __future__ import annotations

import time

from tests.consul_double_tests.dnsclient import ask, ask_wire, flags, make, rcode, rdatas

SHORT = 0.5


def timed(double, name, qtype="A", **kwargs):
    start = time.monotonic()
    reply = ask(double, name, qtype, **kwargs)
    return reply, time.monotonic() - start


def test_latency_delays_every_answer(make_double):
    double = make_double()
    double.control.set_fault("latency", delay=0.3)
    for tcp in (False, True):
        reply, elapsed = timed(double, "web.service.consul", tcp=tcp)
        assert rcode(reply) == "NOERROR" and elapsed >= 0.3
    double.control.clear_faults()
    assert timed(double, "web.service.consul")[1] < 0.3


def test_drop_answers_nothing_on_either_transport(make_double):
    double = make_double()
    wire = make("web.service.consul").to_wire()
    double.control.set_fault("drop")
    assert ask_wire(double, wire, timeout=SHORT) is None
    assert ask_wire(double, wire, tcp=True, timeout=SHORT) is None
    double.control.clear_faults()
    assert ask_wire(double, wire, timeout=SHORT) is not None


def test_lost_servers_give_servfail_after_the_delay(make_double):
    for profile in ("modern", "0.6.4"):
        double = make_double(profile)
        double.control.set_fault("servfail", delay=0.3)
        for name, qtype in [("web.service.consul", "SRV"), ("node1.node.consul", "A"),
                            ("web-q.query.consul", "A")]:
            reply, elapsed = timed(double, name, qtype)
            assert rcode(reply) == "SERVFAIL" and elapsed >= 0.3, (profile, name)
            assert "AA" in flags(reply) and not reply.answer and not reply.authority


def test_lost_servers_servfail_can_be_immediate_and_keeps_opt_in_modern(make_double):
    double = make_double()
    double.control.set_fault("servfail")
    reply, elapsed = timed(double, "web.service.consul", edns=1232)
    assert rcode(reply) == "SERVFAIL" and reply.edns == 0 and elapsed < 0.3


def test_lost_servers_in_modern_still_answer_what_needs_no_rpc(make_double):
    double = make_double()
    double.control.set_fault("servfail")
    assert rdatas(ask(double, "c000020a.addr.consul").answer) == ["192.0.2.10"]
    assert rcode(ask(double, "node1.node.consul", "MX")) == "NOERROR"  # returns before the RPC
    assert rcode(ask(double, "foo.consul")) == "NXDOMAIN"
    ptr = ask(double, "1.0.0.10.in-addr.arpa", "PTR")  # the failed lookup finds nothing
    assert rcode(ptr) == "NXDOMAIN"
    soa = ask(double, "consul.", "SOA")  # SOA without NS records
    assert rcode(soa) == "NOERROR" and soa.answer and not soa.authority


def test_lost_servers_in_064_make_ptr_recurse(make_double):
    double = make_double("0.6.4")
    double.control.set_fault("servfail")
    reply = ask(double, "1.0.0.10.in-addr.arpa", "PTR")
    assert rcode(reply) == "SERVFAIL" and "RA" in flags(reply) and "AA" not in flags(reply)


def test_close_tcp_closes_connections_but_udp_still_answers(make_double):
    double = make_double()
    double.control.set_fault("close_tcp")
    wire = make("web.service.consul").to_wire()
    assert ask_wire(double, wire, tcp=True, timeout=2) is None
    assert rcode(ask(double, "web.service.consul")) == "NOERROR"
    double.control.clear_faults()
    assert ask_wire(double, wire, tcp=True, timeout=2) is not None


def test_faults_are_listed_and_cleared(make_double):
    double = make_double()
    double.control.set_fault("latency", delay=0.1)
    double.control.set_fault("close_tcp")
    assert double.control.faults() == {"latency": 0.1, "drop": False, "servfail": None,
                                       "close_tcp": True, "no_leader": None,
                                       "http_down": False, "dns_lag": 0.0}
    double.control.clear_faults()
    assert double.control.faults()["latency"] == 0.0
