"""Checklist 2 and §8: out-of-zone names go to the recursors unchanged, same transport."""

from __future__ import annotations

import socket

import pytest
from dnslib import RCODE

from tests.consul_double_tests.dnsclient import ask, flags, rcode, records
from tests.consul_double_tests.upstream import Upstream, ZoneResolver

ZONE = {"www.example.test": ("A", "192.0.2.99", 123),
        "9.9.9.9.in-addr.arpa": ("PTR", "nine.example.test.", 60)}


@pytest.fixture(scope="module")
def upstream_server():
    server = Upstream(ZoneResolver(ZONE)).start()
    yield server
    server.stop()


@pytest.fixture
def upstream(upstream_server):
    upstream_server.resolver.asked.clear()
    return upstream_server


@pytest.fixture(scope="module")
def failing_upstream():
    server = Upstream(ZoneResolver({}, rcode=RCODE.SERVFAIL)).start()
    yield server
    server.stop()


def closed_port() -> str:
    """A loopback UDP port with nothing listening (ICMP unreachable: fails at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("profile", ["modern", "0.6.4"])
def test_out_of_zone_names_are_relayed_with_upstream_ttls(make_double, upstream, profile):
    double = make_double(profile, recursors=[upstream.address])
    for tcp in (False, True):
        reply = ask(double, "www.example.test", tcp=tcp)
        assert records(reply.answer) == [("www.example.test.", 123, "A", "192.0.2.99")]
        assert "RA" in flags(reply)
    assert upstream.resolver.asked.count("www.example.test.") == 2
    assert rcode(ask(double, "nosuch.example.test")) == "NXDOMAIN"


@pytest.mark.parametrize("profile", ["modern", "0.6.4"])
def test_unknown_ptr_goes_to_the_recursors(make_double, upstream, profile):
    double = make_double(profile, recursors=[upstream.address])
    reply = ask(double, "9.9.9.9.in-addr.arpa", "PTR")
    assert [r[3] for r in records(reply.answer)] == ["nine.example.test."]


def test_modern_skips_a_recursor_that_answers_servfail(make_double, failing_upstream, upstream):
    double = make_double("modern", recursors=[failing_upstream.address, upstream.address])
    assert [r[3] for r in records(ask(double, "www.example.test").answer)] == ["192.0.2.99"]


def test_064_relays_the_first_reply_whatever_its_rcode(make_double, failing_upstream, upstream):
    double = make_double("0.6.4", recursors=[failing_upstream.address, upstream.address])
    assert rcode(ask(double, "www.example.test")) == "SERVFAIL"
    assert not upstream.resolver.asked


def test_unreachable_recursors_give_servfail_with_ra(make_double, upstream):
    for profile, opt in (("modern", 0), ("0.6.4", -1)):
        double = make_double(profile, recursors=[closed_port()], recursor_timeout="500ms")
        reply = ask(double, "www.example.test", edns=1232)
        assert rcode(reply) == "SERVFAIL" and "RA" in flags(reply) and "AA" not in flags(reply)
        assert reply.edns == opt, profile


def test_a_dead_recursor_is_skipped_for_the_next(make_double, upstream):
    double = make_double("modern", recursors=[closed_port(), upstream.address])
    assert rcode(ask(double, "www.example.test")) == "NOERROR"


def test_ds_goes_to_the_recursors_even_for_the_zone_itself(make_double, upstream):
    """miekg's mux sends DS to the parent zone: "." when recursors are registered."""
    double = make_double("modern", recursors=[upstream.address])
    ask(double, "consul.", "DS")
    assert upstream.resolver.asked == ["consul."]
    alone = make_double("modern")
    assert rcode(ask(alone, "web.service.consul", "DS")) == "NOERROR"  # NODATA from the zone
