"""`--workers N`: N processes on one port with SO_REUSEPORT (ops/workers.py), UDP queries
steered to the workers by name (serve/steering.py)."""

from __future__ import annotations

import os
import signal
import socket
import time

import dns.message
import dns.rcode

from tests.e2e.client import addresses, ask
from tests.harness import catalogs
from tests.harness import upstream as zone
from tests.harness.procs import live_children


def _children(pid: int) -> list[int]:
    return live_children().get(pid, [])


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_workers_share_the_port_and_all_answer(consuldns_server):
    server = consuldns_server(extra_args=["--workers", "3"])
    assert _wait_for(lambda: len(_children(server.pid)) == 3)
    # Each query comes from a fresh source port; the kernel steers it to a worker by name.
    for _ in range(30):
        assert addresses(ask(server, zone.WWW.name)) == list(zone.WWW.values)
    consul = ask(server, "web.service.consul", tcp=True)
    assert sorted(addresses(consul)) == sorted(catalogs.WEB_HEALTHY)


def test_a_worker_that_dies_is_replaced(consuldns_server):
    server = consuldns_server(extra_args=["--workers", "2"])
    assert _wait_for(lambda: len(_children(server.pid)) == 2)
    victim = _children(server.pid)[0]
    time.sleep(2.5)  # past the start-up grace: a death now is a crash, not a failed start
    os.kill(victim, signal.SIGKILL)
    assert _wait_for(lambda: len(_children(server.pid)) == 2 and victim not in
                     _children(server.pid))
    for _ in range(10):
        assert ask(server, zone.WWW.name).rcode() == dns.rcode.NOERROR


def test_sighup_reaches_the_workers_and_sigterm_stops_them_all(consuldns_server):
    server = consuldns_server(extra_args=["--workers", "2"])
    assert _wait_for(lambda: len(_children(server.pid)) == 2)
    workers = _children(server.pid)
    server.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert server.alive() and sorted(_children(server.pid)) == sorted(workers)
    assert ask(server, zone.WWW.name).rcode() == dns.rcode.NOERROR
    assert server.stop(signal.SIGTERM) == 0
    assert not any(os.path.exists(f"/proc/{pid}/stat") and _state(pid) != "Z"
                   for pid in workers)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to port on IPv4 (one per worker once all started)."""
    with open("/proc/net/udp") as handle:
        return sum(1 for line in handle.readlines()[1:]
                   if int(line.split()[1].split(":")[1], 16) == port)


def test_a_name_is_cached_once_whoever_asks_it(consuldns_server, consul_double):
    server = consuldns_server(extra_args=["--workers", "2"],
                              config="[cache.consul]\nmin_ttl = 60\n")
    assert _wait_for(lambda: _udp_sockets_on(server.port) == 2)
    consul_double.control.reset_counters()
    for _ in range(20):  # each from a fresh source port: spread by address, both would ask
        assert sorted(addresses(ask(server, "web.service.consul"))) == sorted(
            catalogs.WEB_HEALTHY)
    assert consul_double.control.counters().total == 1


def test_identical_queries_from_many_clients_share_one_exchange(consuldns_server,
                                                                consul_double):
    server = consuldns_server(extra_args=["--workers", "2"])  # TTL 0: nothing cached
    assert _wait_for(lambda: _udp_sockets_on(server.port) == 2)
    consul_double.control.set_fault("latency", 0.3)  # the exchange stays open meanwhile
    consul_double.control.reset_counters()
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
    try:
        for client in clients:
            client.settimeout(5)
            query = dns.message.make_query("WEB.service.consul", "A")  # any spelling
            client.sendto(query.to_wire(), (server.host, server.port))
        replies = [dns.message.from_wire(client.recv(4096)) for client in clients]
    finally:
        for client in clients:
            client.close()
    assert all(sorted(addresses(reply)) == sorted(catalogs.WEB_HEALTHY) for reply in replies)
    assert consul_double.control.counters().total == 1
