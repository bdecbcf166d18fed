"""`--workers N`: N processes on one port with SO_REUSEPORT (consuldns/workers.py)."""

from __future__ import annotations

import os
import signal
import time

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
    # Each query comes from a fresh source port, so the kernel spreads them over the workers.
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
