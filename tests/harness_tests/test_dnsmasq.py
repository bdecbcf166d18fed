"""dnsmasq as a zone server and as the forwarder consuldns replaces."""

from __future__ import annotations

import dns.rcode

from tests.harness import upstream as zone
from tests.harness_tests.dnsutil import answer_rrset, ask, values

CONSUL_STANDIN = ("--host-record=web.service.consul,127.0.0.7",)


def test_zone_server_answers_its_constants(dnsmasq_server):
    server = dnsmasq_server()
    for rrset in (zone.DNSMASQ_WWW, zone.DNSMASQ_TXT):
        got = answer_rrset(ask(server, rrset.name, rrset.rdtype), rrset.name, rrset.rdtype)
        assert (got.ttl, values(got)) == (rrset.ttl, set(rrset.values))
    reply = ask(server, zone.DNSMASQ_ALIAS.name, "A")
    assert [r.rdtype for r in reply.answer] == [5, 1]  # CNAME then A
    assert ask(server, zone.NX_NAME).rcode() == dns.rcode.NXDOMAIN


def test_forwarder_routes_consul_and_the_rest(upstream, dnsmasq_server, dnsmasq_forwarder):
    consul = dnsmasq_server(extra_args=CONSUL_STANDIN)
    forwarder = dnsmasq_forwarder(upstream, consul, cache_size=100)
    www = ask(forwarder, zone.WWW.name)
    assert values(answer_rrset(www, zone.WWW.name, "A")) == set(zone.WWW.values)
    web = ask(forwarder, "web.service.consul.")
    assert values(answer_rrset(web, "web.service.consul.", "A")) == {"127.0.0.7"}
    assert "--cache-size=100" in forwarder.proc.args
