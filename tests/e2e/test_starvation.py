"""No starvation: a retry storm on one slow name, or a flood of misses from one network,
does not take name service away from everyone else (the Consul names above all).

Floods are bounded in count and time and go to loopback only.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import dns.message
import dns.query
import dns.rcode

from tests.e2e.client import addresses, ask
from tests.e2e.fake_upstream import FakeUpstream, answer_a
from tests.harness import catalogs
from tests.harness import upstream as zone

SLOW_SECONDS = 1.9


def answer_later(fake: FakeUpstream, seconds: float, reply: bytes) -> None:
    """Send reply to the last query's source port `seconds` from now (a slow upstream)."""
    port = fake.received[-1].port
    timer = threading.Timer(seconds, _send_quietly, (fake.udp, reply, (fake.host, port)))
    timer.daemon = True
    timer.start()


def _send_quietly(sock: socket.socket, data: bytes, address) -> None:
    try:
        sock.sendto(data, address)
    except OSError:
        pass


def query_from(server, source: str, name: str) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    return dns.query.udp(query, server.host, port=server.port, source=source, timeout=3)


def metric(server, name: str) -> float:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=3) as response:
        text = response.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith((name + " ", name + "{")))


class Victim(threading.Thread):
    """Another client asking `names` in turn while a flood runs; records every outcome."""

    def __init__(self, server, source: str, names: list[str]):
        super().__init__(daemon=True)
        self.server, self.source, self.names = server, source, names
        self.outcomes: list[tuple[str, str, float]] = []  # (name, rcode or "timeout", secs)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for name in self.names:
                started = time.monotonic()
                try:
                    reply = query_from(self.server, self.source, name)
                    outcome = dns.rcode.to_text(reply.rcode()) if addresses(reply) else "EMPTY"
                except dns.exception.Timeout:
                    outcome = "timeout"
                self.outcomes.append((name, outcome, time.monotonic() - started))
            time.sleep(0.02)

    def failures(self) -> list[tuple[str, str, float]]:
        return [o for o in self.outcomes if o[1] != "NOERROR"]


def storm(server, name: str, copies: int, seconds: float) -> int:
    """`copies` queries for one name, each with a fresh ID, from one socket; how many sent."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        started = time.monotonic()
        for i in range(copies):
            query = dns.message.make_query(name, "A")
            query.id = i & 0xFFFF
            sock.sendto(query.to_wire(), (server.host, server.port))
            sent += 1
            time.sleep(max(started + seconds * (i + 1) / copies - time.monotonic(), 0))
    return sent


def test_a_retry_storm_on_one_slow_name_does_not_starve_other_clients(consuldns_server):
    slow = FakeUpstream(lambda query, transport: answer_later(
        slow, SLOW_SECONDS, answer_a(query, ["192.0.2.77"])))
    try:
        server = consuldns_server(admin=True, config=(
            '[server]\nmax_inflight = 1000\n'
            f'[[zones]]\nname = "slow.test"\nservers = ["{slow.address}"]\n'))
        victim = Victim(server, "127.0.0.1", ["web.service.consul", zone.WWW.name])
        victim.start()
        try:
            storm(server, "retry.slow.test", copies=1100, seconds=0.6)
            time.sleep(SLOW_SECONDS - 0.6)
        finally:
            victim.stop.set()
            victim.join()
        print(f"storm: victim {len(victim.outcomes)} queries, {len(victim.failures())} failed")
        assert len(slow.received) == 1  # one exchange for the whole storm
        assert len(victim.outcomes) >= 10 and victim.failures() == []
        assert metric(server, "consuldns_cache_coalesced_dropped_total") >= 1100 - 500
    finally:
        slow.stop()


def test_a_flood_of_misses_from_one_network_leaves_room_for_another(consuldns_server):
    silent = FakeUpstream(lambda query, transport: None)
    try:
        cap = 20
        server = consuldns_server(config=(
            f'[server]\nmax_inflight = {cap}\n'
            f'[[zones]]\nname = "flood.test"\nservers = ["{silent.address}"]\ntimeout = 3.0\n'))
        # 127.0.1.0/24 is another network than the flood's 127.0.0.0/24.
        victim = Victim(server, "127.0.1.1", ["web.service.consul", "db.service.consul"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(200):
                query = dns.message.make_query(f"n{i}.flood.test", "A")
                sock.sendto(query.to_wire(), (server.host, server.port))
            time.sleep(0.3)
            victim.start()
            time.sleep(1.0)
            victim.stop.set()
            victim.join()
        print(f"flood: victim {len(victim.outcomes)} queries, {len(victim.failures())} failed")
        assert len(silent.received) == cap - cap // 4  # the flood's share, no more
        assert len(victim.outcomes) >= 5 and victim.failures() == []
    finally:
        silent.stop()


def test_over_the_cap_a_name_with_a_stale_answer_gets_it_not_servfail(consuldns_server):
    silent = FakeUpstream(lambda query, transport: None)
    try:
        server = consuldns_server(config=(
            '[server]\nmax_inflight = 4\n'
            f'[[zones]]\nname = "flood.test"\nservers = ["{silent.address}"]\ntimeout = 3.0\n'))
        # The agent's TTL-0 answer expires at once but stays servable stale.
        assert sorted(addresses(ask(server, "web.service.consul"))) == sorted(
            catalogs.WEB_HEALTHY)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(4):
                query = dns.message.make_query(f"n{i}.flood.test", "A")
                sock.sendto(query.to_wire(), (server.host, server.port))
        time.sleep(0.3)  # the flood holds its share of the 4 exchanges (3)
        reply = ask(server, "web.service.consul")
        assert reply.rcode() == dns.rcode.NOERROR
        assert sorted(addresses(reply)) == sorted(catalogs.WEB_HEALTHY)
        assert {rrset.ttl for rrset in reply.answer} == {30}  # stale_ttl: served stale
        assert ask(server, "other.flood.test").rcode() == dns.rcode.SERVFAIL  # nothing stale
    finally:
        silent.stop()
