"""`--workers N`: N processes on one port with SO_REUSEPORT (ops/workers.py), UDP queries
steered to the workers by name (serve/steering.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import dns.message
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consuldns import __version__
from tests.e2e.admin import http, scrape
from tests.e2e.client import addresses, ask
from tests.e2e.fake_upstream import answer_a
from tests.harness import catalogs
from tests.harness import upstream as zone
from tests.harness.consuldns import product_env
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


def _both_ready(server) -> bool:
    """Both workers bound their sockets and asked the agent their start-up question (its SOA),
    which the tests below must not count."""
    return (_udp_sockets_on(server.port) == 2
            and server.log_text().count(" ready (pid ") == 2)


def _udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to port on IPv4 (one per worker once all started)."""
    with open("/proc/net/udp") as handle:
        return sum(1 for line in handle.readlines()[1:]
                   if int(line.split()[1].split(":")[1], 16) == port)


def test_a_name_is_cached_once_whoever_asks_it(consuldns_server, consul_double):
    server = consuldns_server(extra_args=["--workers", "2"],
                              config="[cache.consul]\nmin_ttl = 60\n")
    assert _wait_for(lambda: _both_ready(server))
    consul_double.control.reset_counters()
    for _ in range(20):  # each from a fresh source port: spread by address, both would ask
        assert sorted(addresses(ask(server, "web.service.consul"))) == sorted(
            catalogs.WEB_HEALTHY)
    assert consul_double.control.counters().total == 1


def test_identical_queries_from_many_clients_share_one_exchange(consuldns_server,
                                                                consul_double):
    server = consuldns_server(extra_args=["--workers", "2"])  # TTL 0: nothing cached
    assert _wait_for(lambda: _both_ready(server))
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


# ------------------------------------------------------------------ one server to operate


def worker_socket(server, slot: int) -> str:
    """The private admin socket of the worker in `slot` (the supervisor logs its directory)."""
    found = re.search(r"their admin sockets are in (\S+)", server.log_text())
    assert found, server.log_text()
    return f"{found.group(1)}/worker-{slot}.sock"


def ask_worker(server, slot: int, target: str) -> str:
    """GET target from one worker's private admin socket; the body."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(3)
        conn.connect(worker_socket(server, slot))
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
                     .encode())
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head
    return body


def udp_queries(metrics_text: str) -> float:
    return next(s.value for family in text_string_to_metric_families(metrics_text)
                for s in family.samples
                if s.name == "consuldns_queries_total" and s.labels == {"transport": "udp"})


def cache_state(server, slot: int, name: str) -> str:
    return json.loads(ask_worker(server, slot, f"/cache?name={name}"))["state"]


@pytest.fixture
def two_workers(consuldns_server, fakes):
    fake = fakes(lambda query, transport: answer_a(query, ["192.0.2.9"], ttl=300))
    server = consuldns_server(upstreams=[fake], admin=True, extra_args=["--workers", "2"])
    assert _wait_for(lambda: len(_children(server.pid)) == 2)
    assert _wait_for(lambda: all(os.path.exists(worker_socket(server, s)) for s in (0, 1)))
    return server



def test_metrics_add_up_over_the_workers(two_workers):
    server = two_workers
    before = [udp_queries(ask_worker(server, slot, "/metrics")) for slot in (0, 1)]
    total_before = scrape(server)[("consuldns_queries_total", frozenset({("transport", "udp")}))]
    for i in range(60):  # each from a fresh source port: the kernel spreads them
        assert addresses(ask(server, f"n{i}.workers.test")) == ["192.0.2.9"]
    each = [udp_queries(ask_worker(server, slot, "/metrics")) - before[slot]
            for slot in (0, 1)]
    assert all(count > 0 for count in each) and sum(each) == 60, each
    merged = scrape(server)
    assert merged[("consuldns_queries_total", frozenset({("transport", "udp")}))] \
        - total_before == 60
    assert merged[("consuldns_build_info", frozenset({("version", __version__)}))] == 1
    assert merged[("consuldns_cache_entries", frozenset())] == 60  # one entry per name


def test_a_flush_empties_every_workers_cache(two_workers):
    server = two_workers
    name = "both.workers.test"
    # Over UDP a name always reaches the same worker (serve/steering.py); a TCP connection
    # goes to a worker by its source port, so TCP queries reach the other one too.
    for attempt in range(200):  # until each worker has answered (and cached) it once
        ask(server, name, tcp=attempt % 2 == 1)
        if all(cache_state(server, slot, name) == "fresh" for slot in (0, 1)):
            break
    assert [cache_state(server, slot, name) for slot in (0, 1)] == ["fresh", "fresh"]
    view = json.loads(http(f"{server.admin_url}/cache?name={name}")[1])
    assert view["state"] == "fresh" and view["workers"] == {"0": "fresh", "1": "fresh"}
    flushed = subprocess.run([sys.executable, "-m", "consuldns", "cache", "flush", name,
                              "--admin", server.admin_address], capture_output=True, text=True,
                             timeout=30, env=product_env(), check=False)
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout.strip() == f"flushed 2 entries for {name}."
    assert [cache_state(server, slot, name) for slot in (0, 1)] == ["miss", "miss"]


def test_a_normal_start_logs_no_error_and_each_line_names_its_worker(two_workers):
    server = two_workers
    assert addresses(ask(server, "quiet.workers.test")) == ["192.0.2.9"]
    log_text = server.log_text()
    assert " ERROR " not in log_text and "Traceback" not in log_text
    ready = [line for line in log_text.splitlines() if " ready (pid " in line]
    assert sorted(re.search(r"\[worker (\d)\]", line).group(1) for line in ready) == ["0", "1"]
