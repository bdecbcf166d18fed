"""The full topology: consuldns between the Consul double and unbound, on loopback and inside
a network namespace for glibc."""

from __future__ import annotations

import dns.rcode
import pytest

from tests.harness import catalogs
from tests.harness import upstream as zone
from tests.harness.netns import parse_ahosts
from tests.harness_tests.dnsutil import answer_rrset, ask, values

WEB = "web.service.consul."


def test_double_serves_the_default_catalog(consul_double):
    reply = ask(consul_double, WEB)
    assert values(answer_rrset(reply, WEB, "A")) <= set(catalogs.WEB_HEALTHY)
    assert consul_double.control.count(WEB, "A") == 1


def test_consuldns_between_double_and_unbound(consuldns_server, consul_double):
    server = consuldns_server()
    web = ask(server, WEB)
    assert values(answer_rrset(web, WEB, "A")) == set(catalogs.WEB_HEALTHY)
    www = ask(server, zone.WWW.name)
    assert values(answer_rrset(www, zone.WWW.name, "A")) == set(zone.WWW.values)
    assert consul_double.control.count(WEB, "A") >= 1
    assert consul_double.control.count(zone.WWW.name) == 0


@pytest.mark.netns
def test_glibc_in_netns_sees_consul_and_upstream_names(netns_topology):
    topology = netns_topology()
    web = topology.getent(WEB.rstrip("."))
    assert web.returncode == 0, web.stderr
    assert set(parse_ahosts(web.stdout)) == set(catalogs.WEB_HEALTHY)
    www = topology.getent(zone.WWW.name.rstrip("."))
    assert set(parse_ahosts(www.stdout)) == set(zone.WWW.values), www
    assert topology.double.control.count(WEB, "A") >= 1


@pytest.mark.netns
def test_double_control_reaches_into_the_namespace(netns_topology):
    topology = netns_topology()
    topology.double.control.deregister_node("node1")
    web = topology.getent(WEB.rstrip("."))
    assert set(parse_ahosts(web.stdout)) == set(catalogs.WEB_HEALTHY) - {"127.0.0.2"}, web
    assert topology.consuldns.port == 53
    assert ask_in(topology, WEB).rcode() == dns.rcode.NOERROR


def ask_in(topology, name):
    return topology.netns.call(ask, topology.consuldns, name)
