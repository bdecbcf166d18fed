"""The unbound upstream serves exactly the zone its constants describe, and nothing beyond."""

from __future__ import annotations

import dns.flags
import dns.rcode
import pytest

from tests.harness import upstream as zone
from tests.harness_tests.dnsutil import answer_rrset, ask, values


@pytest.mark.parametrize("rrset", list(zone.BY_QUESTION.values()),
                         ids=lambda r: f"{r.name}{r.rdtype}")
def test_each_rrset_served_over_tcp(upstream, rrset):
    reply = ask(upstream, rrset.name, rrset.rdtype, tcp=True)
    assert reply.rcode() == dns.rcode.NOERROR
    got = answer_rrset(reply, rrset.name, rrset.rdtype)
    assert got.ttl == rrset.ttl
    assert values(got) == set(rrset.values)


def test_cname_chain_is_followed_in_order(upstream):
    reply = ask(upstream, zone.ALIAS.name, "A")
    got = [(r.name.to_text(), r.ttl, values(r)) for r in reply.answer]
    assert got == [(r.name, r.ttl, set(r.values)) for r in zone.ALIAS_CHAIN]


def test_nxdomain_carries_soa_with_negative_ttl(upstream):
    reply = ask(upstream, zone.NX_NAME, "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    (soa,) = reply.authority
    assert soa.name.to_text() == zone.ZONE
    assert soa.ttl == zone.NEGATIVE_TTL
    assert values(soa) == set(zone.SOA.values)


def test_nodata_carries_soa(upstream):
    reply = ask(upstream, zone.NODATA_NAME, zone.NODATA_TYPE)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []
    assert [r.name.to_text() for r in reply.authority] == [zone.ZONE]


@pytest.mark.parametrize("rrset", [zone.BIG, zone.MANY], ids=["big-txt", "many-a"])
def test_big_answers_truncate_over_udp_without_edns(upstream, rrset):
    reply = ask(upstream, rrset.name, rrset.rdtype, edns=False)
    assert reply.flags & dns.flags.TC


def test_big_txt_exceeds_edns_default_too(upstream):
    assert ask(upstream, zone.BIG.name, "TXT").flags & dns.flags.TC


def test_names_outside_the_zone_are_never_recursed(upstream):
    reply = ask(upstream, "www.example.com.", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.answer == []


def test_refuse_mode_refuses_outside_names(upstream_factory):
    server = upstream_factory(others="refuse")
    assert ask(server, "www.example.com.", "A").rcode() == dns.rcode.REFUSED
    assert ask(server, zone.WWW.name, "A").rcode() == dns.rcode.NOERROR


def test_stop_returns_exit_code_and_frees_port(upstream_factory):
    server = upstream_factory()
    assert server.stop() == 0
    assert not server.alive()
    assert "start of service" in server.log_text()
