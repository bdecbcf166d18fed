"""A network namespace with unbound on 127.0.0.1:53, queried through glibc (getent)."""

from __future__ import annotations

import dns.rcode
import pytest

from tests.harness import upstream as zone
from tests.harness.netns import parse_ahosts
from tests.harness.procs import wait_for_dns
from tests.harness.upstream import start_unbound

pytestmark = pytest.mark.netns


def test_getent_resolves_through_port_53_inside(netns, tmp_path):
    server = start_unbound(tmp_path / "unbound", port=53, place=netns)
    assert server.port == 53
    result = netns.getent(zone.WWW.name.rstrip("."))
    assert result.returncode == 0, result.stderr
    assert set(parse_ahosts(result.stdout)) == set(zone.WWW.values)
    dual = parse_ahosts(netns.getent(zone.DUAL_A.name.rstrip(".")).stdout)
    assert set(dual) == {*zone.DUAL_A.values, *zone.DUAL_AAAA.values}


def test_getent_nxdomain_fails_with_exit_2(netns, tmp_path):
    start_unbound(tmp_path / "unbound", port=53, place=netns)
    result = netns.getent(zone.NX_NAME.rstrip("."))
    assert result.returncode == 2
    assert result.stdout == ""


def test_call_runs_python_inside_the_namespace(netns, tmp_path):
    server = start_unbound(tmp_path / "unbound", port=53, place=netns)
    reply = netns.call(wait_for_dns, "127.0.0.1", 53, zone.WWW.name, timeout=2)
    assert reply.rcode() == dns.rcode.NOERROR
    netns.delete()
    assert not server.alive()
