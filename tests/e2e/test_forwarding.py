"""`consuldns serve` as a process between dnspython/dig and real servers (issue: core)."""

from __future__ import annotations

import collections
import itertools
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
from tests.e2e.fake_upstream import FakeUpstream, answer_a, truncated, wait_until
from tests.harness import catalogs
from tests.harness import upstream as zone

GOOD = "192.0.2.8"
EVIL = "203.0.113.66"

def test_routes_consul_names_to_the_agent_and_the_rest_upstream(shared_consuldns,
                                                                shared_double):
    server = shared_consuldns
    consul = ask(server, "web.service.consul")
    assert consul.rcode() == dns.rcode.NOERROR
    assert sorted(addresses(consul)) == sorted(catalogs.WEB_HEALTHY)
    www = ask(server, zone.WWW.name)
    assert addresses(www) == list(zone.WWW.values)
    counts = shared_double.control.counters()
    assert counts.count("web.service.consul") >= 1
    assert not any("example.test" in name for name, _, _ in counts.by_key)


def test_suffix_rule_is_label_wise(shared_consuldns, shared_double):
    server = shared_consuldns
    reply = ask(server, "x.notconsul")
    assert reply.rcode() == dns.rcode.NXDOMAIN  # unbound's answer, not the agent's
    assert shared_double.control.counters().total == 0
    assert ask(server, "WEB.SERVICE.CONSUL").rcode() == dns.rcode.NOERROR
    assert shared_double.control.counters().total >= 1


def test_question_and_owner_names_keep_the_clients_case(shared_consuldns):
    server = shared_consuldns
    for name in ("Web.Service.Consul", "WWW.Example.TEST"):
        reply = ask(server, name)
        assert reply.question[0].name.to_text() == name + "."
        assert reply.answer[0].name.to_text() == name + "."


def test_reply_flags_for_clients(shared_consuldns):
    """RA set, AA cleared although the agent sets it, Z/AD/CD clear (nginx drops others)."""
    server = shared_consuldns
    query = dns.message.make_query("web.service.consul", "A")
    raw = ask_raw(server, query.to_wire())
    flags = struct.unpack("!H", raw[2:4])[0]
    assert flags & 0xF870 == 0x8000  # nginx's own check: QR, opcode 0, no Z/AD/CD
    assert flags & dns.flags.RA and not flags & dns.flags.AA


def test_udp_tc_from_upstream_is_retried_over_tcp(shared_consuldns):
    server = shared_consuldns
    reply = ask(server, zone.BIG.name, "TXT", tcp=True)
    assert not reply.flags & dns.flags.TC
    strings = b"".join(s for rdata in reply.answer[0] for s in rdata.strings)
    assert len(strings) == 2000
    over_udp = ask(server, zone.BIG.name, "TXT", edns=0, payload=4096)
    assert over_udp.flags & dns.flags.TC  # over our 1232-byte cap: the client must use TCP


def test_client_without_edns_gets_whole_records_and_tc_then_all_over_tcp(shared_consuldns):
    server = shared_consuldns
    udp_query = dns.message.make_query(zone.MANY.name, "A")
    raw = ask_raw(server, udp_query.to_wire())
    assert len(raw) <= 512
    partial = dns.message.from_wire(raw)
    assert partial.flags & dns.flags.TC
    assert 10 <= len(addresses(partial)) < 40
    assert set(addresses(partial)) <= set(zone.MANY.values)
    full = ask(server, zone.MANY.name, tcp=True)
    assert sorted(addresses(full)) == sorted(zone.MANY.values)


def with_more_web_instances(count: int) -> tuple[dict, list[str]]:
    """The default catalog with `count` more healthy web instances; every healthy address."""
    catalog = catalogs.default_catalog()
    added = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]
    for i, address in enumerate(added):
        catalog["nodes"].append({"name": f"extra{i}", "address": address, "meta": {},
                                 "checks": []})
        catalog["services"].append({"id": f"web-extra{i}", "name": "web", "node": f"extra{i}",
                                    "address": "", "port": 8080, "tags": [], "checks": []})
    return catalog, sorted([*catalogs.WEB_HEALTHY, *added])


def test_agent_that_trims_silently_to_three_does_not_hide_instances(consul_double_factory,
                                                                    consuldns_server):
    catalog, expected = with_more_web_instances(10)
    old_agent = consul_double_factory(catalog, profile="0.6.4")
    direct = ask(old_agent, "web.service.consul", edns=0, payload=4096)
    assert len(addresses(direct)) == 3 and not direct.flags & dns.flags.TC  # the trap
    server = consuldns_server(consul=old_agent)
    assert sorted(addresses(ask(server, "web.service.consul", tcp=True))) == expected
    assert sorted(addresses(ask(server, "web.service.consul", edns=0))) == expected


def test_agent_that_keeps_opt_and_fills_our_buffer_is_asked_again_over_tcp(
        consul_double_factory, consuldns_server):
    """A modern agent trims to our EDNS buffer (4096) minus 8 silently and keeps its OPT: a
    reply that close to the buffer may be incomplete, so consuldns asks again over TCP."""
    catalog, expected = with_more_web_instances(300)  # ~4.9 KB of A records
    agent = consul_double_factory(catalog, keep_opt_when_trimmed=True)
    direct = ask(agent, "web.service.consul", edns=0, payload=4096)
    assert direct.edns == 0 and not direct.flags & dns.flags.TC  # OPT kept, no TC
    assert len(addresses(direct)) < len(expected)  # the trap
    agent.control.reset_counters()
    server = consuldns_server(consul=agent)
    assert sorted(addresses(ask(server, "web.service.consul", tcp=True))) == expected
    assert agent.control.count("web.service.consul", "A", "tcp") == 1


def test_unknown_edns_version_gets_badvers(shared_consuldns):
    server = shared_consuldns
    reply = ask(server, zone.WWW.name, edns=1)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0


@pytest.mark.parametrize("garbage", [
    b"", b"\x00", b"\x12\x34" * 5, os.urandom(11),
    b"\x12\x34\x81\x80" + b"\x00" * 8,  # a response: never answered (reflection loops)
], ids=["empty", "one-byte", "ten-bytes", "random-11", "response"])
def test_unreadable_packets_are_dropped_and_service_continues(shared_consuldns, garbage):
    server = shared_consuldns
    assert ask_raw(server, garbage, timeout=0.3) is None
    assert ask(server, zone.WWW.name).rcode() == dns.rcode.NOERROR


def test_malformed_queries_get_formerr_and_notimp(shared_consuldns):
    server = shared_consuldns
    two_questions = struct.pack("!HHHHHH", 77, 0x0100, 2, 0, 0, 0) + (
        b"\x01a\x04test\x00\x00\x01\x00\x01" * 2)
    reply = ask_raw(server, two_questions)
    assert reply[:2] == b"\x00\x4d" and reply[3] & 0x0F == dns.rcode.FORMERR
    notify = bytearray(dns.message.make_query("a.test", "SOA").to_wire())
    notify[2] |= 0x20  # opcode 4, NOTIFY
    assert ask_raw(server, bytes(notify))[3] & 0x0F == dns.rcode.NOTIMP
    chaos = dns.message.make_query("version.bind", "TXT", "CH")
    assert dns.message.from_wire(ask_raw(server, chaos.to_wire())).rcode() == dns.rcode.REFUSED


def test_any_gets_a_minimal_answer(shared_consuldns):
    reply = ask(shared_consuldns, zone.WWW.name, "ANY")
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


def test_tcp_connection_carries_several_queries(shared_consuldns):
    server = shared_consuldns
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


RANDOM_SAMPLE = 100  # upstream queries; ~0.08 ID collisions expected among them


def test_upstream_queries_use_random_ids_and_short_lived_random_ports(consuldns_server):
    fake = FakeUpstream(lambda query, transport: answer_a(query, ["192.0.2.7"], ttl=0))
    try:
        server = consuldns_server(upstreams=[fake])
        for i in range(RANDOM_SAMPLE):
            assert addresses(ask(server, f"n{i}.random.test")) == ["192.0.2.7"]
        mine = [r for r in fake.received if r.name.endswith(".random.test.")]
    finally:
        fake.stop()
    assert len(mine) == RANDOM_SAMPLE
    ids, ports = [r.id for r in mine], [r.port for r in mine]
    assert_unpredictable(ids, modulus=65536)
    # A pooled socket carries at most MAX_USES queries, one at a time, then a new random
    # port takes over (upstream/sockets.py).
    assert max(collections.Counter(ports).values()) <= sockets.MAX_USES
    assert_unpredictable(list(dict.fromkeys(ports)), modulus=65536)
    # IDs draw on all 16 bits: the high and the low byte both vary (~83 of 256 values
    # expected each; a counter started anywhere keeps the high byte nearly constant).
    assert len({i >> 8 for i in ids}) >= 50 and len({i & 0xFF for i in ids}) >= 50


def assert_unpredictable(values: list[int], modulus: int) -> None:
    """Distinct values, and no step that repeats: a counter of any stride repeats its step."""
    assert len(set(values)) >= len(values) - 2, values  # P(3+ collisions) ~ 1e-4
    steps = [(b - a) % modulus for a, b in itertools.pairwise(values)]
    assert len(set(steps)) >= len(steps) - 3, steps


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


def test_reply_with_the_wrong_id_is_ignored_over_udp_and_tcp(consuldns_server):
    """Replies to the right question with the wrong ID (carrying EVIL) or to the wrong
    question with the right ID come first; only the matching GOOD one may be used."""

    def spoof_first(query, transport):
        good = answer_a(query, [GOOD])
        wrong_id = struct.pack("!H", (query.id + 1) % 65536) + answer_a(query, [EVIL])[2:]
        other = dns.message.make_query("evil.test", "A")
        other.id = query.id
        wrong_question = answer_a(other, [EVIL])
        if transport == "udp" and query.question[0].name.labels[0] == b"via-tcp":
            return truncated(query)
        return [wrong_id, wrong_question, good]

    fake = FakeUpstream(spoof_first)
    try:
        server = consuldns_server(upstreams=[fake])
        assert addresses(ask(server, "spoof.test")) == [GOOD]
        assert addresses(ask(server, "via-tcp.spoof.test")) == [GOOD]
        transports = [r.transport for r in fake.received if r.name == "via-tcp.spoof.test."]
    finally:
        fake.stop()
    assert transports == ["udp", "tcp"]


def test_all_upstreams_down_gives_servfail_within_the_deadline(consuldns_server, consul_double):
    silent = [FakeUpstream(lambda query, transport: None) for _ in range(2)]
    try:
        server = consuldns_server(upstreams=silent)
        started = time.monotonic()
        reply = ask(server, "nobody-answers.test", timeout=8)
        elapsed = time.monotonic() - started
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert 4.3 < elapsed < 5.5  # upstream.timeout's 4.5 s, shared by both servers
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
        assert time.monotonic() - started < 1.0  # well before the 2 s deadline
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


def test_dig_sees_the_same_answers(shared_consuldns):
    server = shared_consuldns
    out = subprocess.run(["dig", "+short", "-p", str(server.port), f"@{server.host}",
                          "web.service.consul"], capture_output=True, text=True, timeout=10)
    assert sorted(out.stdout.split()) == sorted(catalogs.WEB_HEALTHY)
    out = subprocess.run(["dig", "+tcp", "+short", "-p", str(server.port), f"@{server.host}",
                          zone.MULTI.name], capture_output=True, text=True, timeout=10)
    assert sorted(out.stdout.split()) == sorted(zone.MULTI.values)


def test_sigterm_answers_the_queries_in_flight_then_exits_zero(consuldns_server):
    """A UDP and a TCP query wait on a slow upstream (1 s) when SIGTERM arrives: both get
    their answer (the drain allows 3 s), then the process exits 0."""
    fake = FakeUpstream(lambda query, transport: fake.answer_later(1.0, answer_a(query, [GOOD])))
    try:
        server = consuldns_server(upstreams=[fake])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.create_connection((server.host, server.port)) as tcp:
            udp.settimeout(5)
            tcp.settimeout(5)
            udp.sendto(dns.message.make_query("udp.drain.test", "A").to_wire(),
                       (server.host, server.port))
            tcp.sendall(tcp_frame(dns.message.make_query("tcp.drain.test", "A").to_wire()))
            assert wait_until(lambda: len(fake.received) == 2)  # both waiting upstream
            server.send_signal(signal.SIGTERM)
            assert addresses(dns.message.from_wire(udp.recv(512))) == [GOOD]
            assert addresses(dns.message.from_wire(read_frame(tcp))) == [GOOD]
        assert server.proc.wait(timeout=5) == 0
    finally:
        fake.stop()


def run_query(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "consuldns", "query", *args],
                          capture_output=True, text=True, timeout=20)


def test_query_command_output_and_exit_codes(shared_consuldns):
    server = shared_consuldns
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
    # The agent sends 1024 SRV (modern Consul's cap) and their 1024 A records compressed
    # in ~60 KB; consuldns writes owner names in full, which takes more than 65535 octets.
    with socket.create_connection((server.host, server.port), timeout=10) as conn:
        conn.sendall(tcp_frame(dns.message.make_query("big.service.consul", "SRV").to_wire()))
        raw = read_frame(conn)
    srv = dns.message.from_wire(raw)  # the header counts agree with the records sent
    assert srv.rcode() == dns.rcode.NOERROR
    answers = [rdata for rrset in srv.answer for rdata in rrset]
    glue = {rrset.name: rrset for rrset in srv.additional}
    assert len(answers) == 1024 and not srv.flags & dns.flags.TC  # every answer kept
    # Fitted, not merely under the limit: additional records were cut only where the next
    # one (an A record, ~40 octets in full) would no longer fit; none cut means no fitting.
    assert len(glue) < 1024 and len(raw) > 65535 - 64
    assert set(glue) <= {rdata.target for rdata in answers}
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
