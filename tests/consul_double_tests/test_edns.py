"""Checklist 10: EDNS0 mirroring (modern) versus none at all (0.6.4)."""

from __future__ import annotations

import dns.edns
import dns.flags

from tests.consul_double_tests.dnsclient import ask, rcode


def ecs_of(reply):
    options = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
    return options[0] if options else None


def test_modern_mirrors_opt_with_the_clients_size(modern):
    for size in (700, 1232, 4096):
        reply = ask(modern, "web.service.consul", edns=size)
        assert reply.edns == 0 and reply.payload == size


def test_modern_never_sets_do(modern):
    reply = ask(modern, "web.service.consul", edns=1232, dnssec=True)
    assert reply.edns == 0 and not reply.ednsflags & dns.flags.DO


def test_modern_opt_on_negative_answers_too(modern):
    reply = ask(modern, "nosuch.service.consul", edns=1232)
    assert rcode(reply) == "NXDOMAIN" and reply.payload == 1232


def test_no_opt_without_edns_in_the_query(modern):
    assert ask(modern, "web.service.consul").edns == -1


def test_064_never_returns_opt(legacy):
    for name in ("web.service.consul", "nosuch.service.consul", "1.0.0.10.in-addr.arpa"):
        assert ask(legacy, name, edns=1232).edns == -1


def test_modern_mirrors_ecs_with_scope_0(modern):
    option = dns.edns.ECSOption("192.0.2.0", 24)
    reply = ask(modern, "web.service.consul", edns=1232, options=[option])
    ecs = ecs_of(reply)
    assert ecs is not None and (ecs.address, ecs.srclen, ecs.scopelen) == ("192.0.2.0", 24, 0)


def test_prepared_query_answers_are_scoped_to_the_source_subnet(modern):
    option = dns.edns.ECSOption("192.0.2.0", 24)
    ecs = ecs_of(ask(modern, "web-q.query.consul", edns=1232, options=[option]))
    assert ecs.scopelen == 24
    missing = ecs_of(ask(modern, "nope.query.consul", edns=1232, options=[option]))
    assert missing.scopelen == 0  # NXDOMAIN is global
