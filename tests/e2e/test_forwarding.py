"""`consuldns serve` as a process between dnspython/dig and real servers (issue: core)."""

from __future__ import annotations

import collections
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import pytest

from consuldns.upstream import sockets
from tests.e2e.client import addresses, ask, ask_raw, read_frame, tcp_frame
from tests.e2e.fake_upstream import FakeUpstream, answer_a
from tests.harness import catalogs
from tests.harness import upstream as zone


def test_routes_consul_names_to_the_agent_and_the_rest_upstream(consuldns_server, consul_double):
    server = consuldns_server()
    consul = ask(server, "web.service.consul")
    assert consul.rcode() == dns.rcode.NOERROR
    assert sorted(addresses(consul)) == sorted(catalogs.WEB_HEALTHY)
    www = ask(server, zone.WWW.name)
    assert addresses(www) == list(zone.WWW.values)
    counts = consul_double.control.counters()
    assert counts.count("web.service.consul") >= 1
    assert not any("example.test" in name for name, _, _ in counts.by_key)


def test_suffix_rule_is_label_wise(consuldns_server, consul_double):
    server = consuldns_server()
    consul_double.control.reset_counters()
    reply = ask(server, "x.notconsul")
    assert reply.rcode() == dns.rcode.NXDOMAIN  # unbound's answer, not the agent's
    assert consul_double.control.counters().total == 0
    assert ask(server, "WEB.SERVICE.CONSUL").rcode() == dns.rcode.NOERROR
    assert consul_double.control.counters().total >= 1


def test_question_and_owner_names_keep_the_clients_case(consuldns_server):
    server = consuldns_server()
    for name in ("Web.Service.Consul", "WWW.Example.TEST"):
        reply = ask(server, name)
        assert reply.question[0].name.to_text() == name + "."
        assert reply.answer[0].name.to_text() == name + "."


def test_reply_flags_for_clients(consuldns_server):
    """RA set, AA cleared although the agent sets it, Z/AD/CD clear (nginx drops others)."""
    server = consuldns_server()
    query = dns.message.make_query("web.service.consul", "A")
    raw = ask_raw(server, query.to_wire())
    flags = struct.unpack("!H", raw[2:4])[0]
    assert flags & 0xF870 == 0x8000  # nginx's own check: QR, opcode 0, no Z/AD/CD
    assert flags & dns.flags.RA and not flags & dns.flags.AA


def test_udp_tc_from_upstream_is_retried_over_tcp(consuldns_server):
    server = consuldns_server()
    reply = ask(server, zone.BIG.name, "TXT", tcp=True)
    assert not reply.flags & dns.flags.TC
    strings = b"".join(s for rdata in reply.answer[0] for s in rdata.strings)
    assert len(strings) == 2000
    over_udp = ask(server, zone.BIG.name, "TXT", edns=0, payload=4096)
    assert over_udp.flags & dns.flags.TC  # over our 1232-byte cap: the client must use TCP


def test_client_without_edns_gets_whole_records_and_tc_then_all_over_tcp(consuldns_server):
    server = consuldns_server()
    udp_query = dns.message.make_query(zone.MANY.name, "A")
    raw = ask_raw(server, udp_query.to_wire())
    assert len(raw) <= 512
    partial = dns.message.from_wire(raw)
    assert partial.flags & dns.flags.TC
    assert 10 <= len(addresses(partial)) < 40
    assert set(addresses(partial)) <= set(zone.MANY.values)
    full = ask(server, zone.MANY.name, tcp=True)
    assert sorted(addresses(full)) == sorted(zone.MANY.values)


def test_agent_that_trims_silently_to_three_does_not_hide_instances(consul_double_factory,
                                                                    consuldns_server):
    catalog = catalogs.default_catalog()
    for i in range(6, 16):
        catalog["nodes"].append({"name": f"extra{i}", "address": f"127.0.1.{i}", "meta": {},
                                 "checks": []})
        catalog["services"].append({"id": f"web-extra{i}", "name": "web", "node": f"extra{i}",
                                    "address": "", "port": 8080, "tags": [], "checks": []})
    old_agent = consul_double_factory(catalog, profile="0.6.4")
    expected = sorted([*catalogs.WEB_HEALTHY, *(f"127.0.1.{i}" for i in range(6, 16))])
    direct = ask(old_agent, "web.service.consul", edns=0, payload=4096)
    assert len(addresses(direct)) == 3 and not direct.flags & dns.flags.TC  # the trap
    server = consuldns_server(consul=old_agent)
    assert sorted(addresses(ask(server, "web.service.consul", tcp=True))) == expected
    assert sorted(addresses(ask(server, "web.service.consul", edns=0))) == expected


def test_unknown_edns_version_gets_badvers(consuldns_server):
    server = consuldns_server()
    reply = ask(server, zone.WWW.name, edns=1)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0


@pytest.mark.parametrize("garbage", [
    b"", b"\x00", b"\x12\x34" * 5, os.urandom(11),
    b"\x12\x34\x81\x80" + b"\x00" * 8,  # a response: never answered (reflection loops)
], ids=["empty", "one-byte", "ten-bytes", "random-11", "response"])
def test_unreadable_packets_are_dropped_and_service_continues(consuldns_server, garbage):
    server = consuldns_server()
    assert ask_raw(server, garbage, timeout=0.3) is None
    assert ask(server, zone.WWW.name).rcode() == dns.rcode.NOERROR


def test_malformed_queries_get_formerr_and_notimp(consuldns_server):
    server = consuldns_server()
    two_questions = struct.pack("!HHHHHH", 77, 0x0100, 2, 0, 0, 0) + (
        b"\x01a\x04test\x00\x00\x01\x00\x01" * 2)
    reply = ask_raw(server, two_questions)
    assert reply[:2] == b"\x00\x4d" and reply[3] & 0x0F == dns.rcode.FORMERR
    notify = bytearray(dns.message.make_query("a.test", "SOA").to_wire())
    notify[2] |= 0x20  # opcode 4, NOTIFY
    assert ask_raw(server, bytes(notify))[3] & 0x0F == dns.rcode.NOTIMP
    chaos = dns.message.make_query("version.bind", "TXT", "CH")
    assert dns.message.from_wire(ask_raw(server, chaos.to_wire())).rcode() == dns.rcode.REFUSED


def test_any_gets_a_minimal_answer(consuldns_server):
    reply = ask(consuldns_server(), zone.WWW.name, "ANY")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rrset.rdtype for rrset in reply.answer] == [13]  # HINFO, RFC 8482


def test_half_a_length_prefix_does_not_block_other_clients(consuldns_server):
    server = consuldns_server(config="[server]\ntcp_idle_timeout = 1.0\n")
    stuck = socket.create_connection((server.host, server.port))
    stuck.sendall(b"\x00")
    started = time.monotonic()
    assert ask(server, zone.WWW.name, tcp=True).rcode() == dns.rcode.NOERROR
    assert ask(server, zone.WWW.name).rcode() == dns.rcode.NOERROR
    stuck.settimeout(5)
    assert stuck.recv(10) == b""  # closed by the server after its idle timeout
    assert time.monotonic() - started < 4
    stuck.close()


def test_tcp_connection_carries_several_queries(consuldns_server):
    server = consuldns_server()
    with socket.create_connection((server.host, server.port)) as conn:
        names = [zone.WWW.name, zone.MULTI.name, "web.service.consul"]
        queries = [dns.message.make_query(name, "A") for name in names]
        conn.sendall(b"".join(tcp_frame(q.to_wire()) for q in queries))
        conn.settimeout(5)
        replies = {}
        for _ in queries:
            reply = dns.message.from_wire(read_frame(conn))
            replies[reply.id] = reply
    assert {q.id for q in queries} == set(replies)
    assert all(r.rcode() == dns.rcode.NOERROR for r in replies.values())


def test_upstream_queries_use_random_ids_and_short_lived_random_ports(consuldns_server,
                                                                     consul_double):
    fake = FakeUpstream(lambda query, transport: answer_a(query, ["192.0.2.7"], ttl=0))
    try:
        server = consuldns_server(upstreams=[fake])
        for i in range(40):
            assert addresses(ask(server, f"n{i}.random.test")) == ["192.0.2.7"]
        mine = [r for r in fake.received if r.name.endswith(".random.test.")]
        ids = [r.id for r in mine]
        ports = collections.Counter(r.port for r in mine)
        assert len(ids) == 40
        assert len(set(ids)) >= 38  # 16 random bits: a collision or two at most
        assert not _is_sequence(ids)
        assert max(ports.values()) <= sockets.MAX_USES  # then the socket is replaced
        assert len(ports) >= 3 and not _is_sequence(list(ports))
    finally:
        fake.stop()


def test_upstream_queries_in_flight_together_leave_from_different_ports(consuldns_server,
                                                                        consul_double):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        upstream.bind(("127.0.0.1", 0))
        upstream.settimeout(5)
        server = consuldns_server(upstreams=["127.0.0.1:%d" % upstream.getsockname()[1]])
        for i in range(20):
            client.sendto(dns.message.make_query(f"c{i}.together.test", "A").to_wire(),
                          (server.host, server.port))
        asked = [upstream.recvfrom(4096) for _ in range(20)]  # none answered yet
        assert len({source for _, source in asked}) == 20  # one query per port at a time
        for data, source in asked:
            upstream.sendto(answer_a(dns.message.from_wire(data), ["192.0.2.5"]), source)
        client.settimeout(5)
        replies = [dns.message.from_wire(client.recv(4096)) for _ in range(20)]
    assert all(addresses(reply) == ["192.0.2.5"] for reply in replies)


def _is_sequence(values: list[int]) -> bool:
    return all(b - a in (0, 1) for a, b in zip(values, values[1:]))


def test_replies_from_the_wrong_id_or_question_are_ignored(consuldns_server, consul_double):
    def spoof_first(query, transport):
        good = answer_a(query, ["192.0.2.8"])
        wrong_id = bytearray(good)
        wrong_id[0:2] = struct.pack("!H", (query.id + 1) % 65536)
        other = dns.message.make_query("evil.test", "A")
        other.id = query.id
        wrong_question = answer_a(other, ["203.0.113.66"])
        return [bytes(wrong_id), wrong_question, good]

    fake = FakeUpstream(spoof_first)
    try:
        server = consuldns_server(upstreams=[fake])
        assert addresses(ask(server, "spoof.test")) == ["192.0.2.8"]
    finally:
        fake.stop()


def test_all_upstreams_down_gives_servfail_within_the_deadline(consuldns_server, consul_double):
    silent = [FakeUpstream(lambda query, transport: None) for _ in range(2)]
    try:
        server = consuldns_server(upstreams=silent)
        started = time.monotonic()
        reply = ask(server, "nobody-answers.test", timeout=8)
        elapsed = time.monotonic() - started
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert 4.3 < elapsed < 5.1  # upstream.timeout's 4.5 s, shared by both servers
        assert {r.port for r in silent[0].received} and silent[1].received  # both were tried
    finally:
        for fake in silent:
            fake.stop()


def test_refused_upstream_ports_fail_over_fast(consuldns_server, consul_double):
    dead = FakeUpstream(lambda query, transport: None)
    dead.stop()  # nothing listens: ICMP port unreachable
    good = FakeUpstream(lambda query, transport: answer_a(query, ["192.0.2.9"]))
    try:
        server = consuldns_server(upstreams=[dead, good])
        started = time.monotonic()
        assert addresses(ask(server, "failover.test")) == ["192.0.2.9"]
        assert time.monotonic() - started < 0.5
    finally:
        good.stop()


def test_servfail_from_first_server_fails_over_to_the_next(consuldns_server, consul_double):
    def servfail(query, transport):
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.SERVFAIL)
        return reply.to_wire()

    bad = FakeUpstream(servfail)
    good = FakeUpstream(lambda query, transport: answer_a(query, ["192.0.2.11"]))
    try:
        server = consuldns_server(upstreams=[bad, good])
        assert addresses(ask(server, "servfail-first.test")) == ["192.0.2.11"]
        assert len(bad.received) == 1
    finally:
        bad.stop()
        good.stop()


def test_ipv6_listener(consuldns_server, consul_double, upstream):
    server = consuldns_server(host="::1")
    assert addresses(ask(server, zone.WWW.name)) == list(zone.WWW.values)
    assert addresses(ask(server, zone.WWW.name, tcp=True)) == list(zone.WWW.values)


def test_dig_sees_the_same_answers(consuldns_server):
    server = consuldns_server()
    out = subprocess.run(["dig", "+short", "-p", str(server.port), f"@{server.host}",
                          "web.service.consul"], capture_output=True, text=True, timeout=10)
    assert sorted(out.stdout.split()) == sorted(catalogs.WEB_HEALTHY)
    out = subprocess.run(["dig", "+tcp", "+short", "-p", str(server.port), f"@{server.host}",
                          zone.MULTI.name], capture_output=True, text=True, timeout=10)
    assert sorted(out.stdout.split()) == sorted(zone.MULTI.values)


def test_sigterm_drains_and_exits_zero(consuldns_server):
    server = consuldns_server()
    assert ask(server, zone.WWW.name).rcode() == dns.rcode.NOERROR
    assert server.stop(signal.SIGTERM) == 0


def run_query(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "consuldns", "query", *args],
                          capture_output=True, text=True, timeout=20)


def test_query_command_output_and_exit_codes(consuldns_server):
    server = consuldns_server()
    target = f"{server.host}:{server.port}"
    ok = run_query("web.service.consul", "--server", target)
    assert ok.returncode == 0
    assert "status: NOERROR" in ok.stdout and "ANSWER SECTION" in ok.stdout
    assert all(ip in ok.stdout for ip in catalogs.WEB_HEALTHY)
    assert f"SERVER: {target} (UDP)" in ok.stdout
    nx = run_query(zone.NX_NAME, "--server", target)
    assert nx.returncode == 1 and "NXDOMAIN" in nx.stdout
    nodata = run_query(zone.WWW.name, "AAAA", "--server", target, "--tcp")
    assert nodata.returncode == 1 and "NODATA" in nodata.stdout and "(TCP)" in nodata.stdout
    usage = run_query(zone.WWW.name, "NOTATYPE", "--server", target)
    assert usage.returncode == 2
    dead = run_query(zone.WWW.name, "--server", "127.0.0.1:9", "--timeout", "0.5")
    assert dead.returncode == 3
    as_json = run_query(zone.MULTI.name, "--server", target, "--json")
    import json

    document = json.loads(as_json.stdout)
    assert document["rcode"] == "NOERROR"
    assert sorted(a["data"] for a in document["answer"]) == sorted(zone.MULTI.values)


def test_huge_srv_answer_over_tcp_is_fitted_to_one_tcp_message(consul_double_factory,
                                                                consuldns_server):
    catalog = {"nodes": [], "services": []}
    for i in range(1, 1101):
        catalog["nodes"].append({"name": f"n{i}", "address": f"10.{i // 250}.{i % 250}.1",
                                 "meta": {}, "checks": []})
        catalog["services"].append({"id": f"big-n{i}", "name": "big", "node": f"n{i}",
                                    "address": "", "port": 80, "tags": [], "checks": []})
    server = consuldns_server(consul=consul_double_factory(catalog))
    srv = ask(server, "big.service.consul", "SRV", tcp=True, timeout=10)
    assert srv.rcode() == dns.rcode.NOERROR
    assert sum(len(rrset) for rrset in srv.answer) >= 1000  # modern Consul caps SRV at 1024
    assert len(srv.to_wire()) <= 65535
    a = ask(server, "big.service.consul", tcp=True, timeout=10)
    assert len(addresses(a)) == 1100


def test_chaos_version_and_id_when_enabled(consuldns_server):
    import socket as socket_module

    from consuldns import __version__

    server = consuldns_server(config="[server]\nchaos = true\n")
    version = dns.message.from_wire(ask_raw(server, dns.message.make_query(
        "VERSION.bind", "TXT", "CH").to_wire()))
    assert version.rcode() == dns.rcode.NOERROR
    assert version.answer[0].rdclass == dns.rdataclass.CH
    assert version.answer[0][0].strings == (f"consuldns {__version__}".encode(),)
    assert version.question[0].name.to_text() == "VERSION.bind."
    identity = dns.message.from_wire(ask_raw(server, dns.message.make_query(
        "id.server", "TXT", "CH").to_wire()))
    assert identity.answer[0][0].strings == (socket_module.gethostname().encode(),)
    other = dns.message.from_wire(ask_raw(server, dns.message.make_query(
        "authors.bind", "TXT", "CH").to_wire()))
    assert other.rcode() == dns.rcode.REFUSED
    assert ask(server, zone.WWW.name).rcode() == dns.rcode.NOERROR
