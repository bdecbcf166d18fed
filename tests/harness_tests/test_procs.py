"""The process helper: ports, readiness with a deadline, stop by PID, bind retries."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from tests.harness.ports import format_address, free_port, split_address
from tests.harness.procs import StartupError, start, wait_for_dns
from tests.harness.upstream import start_unbound


def test_free_port_is_free_for_udp_and_tcp():
    port = free_port()
    assert 1024 <= port <= 65535  # a real port: binding port 0 would pass below with any
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        udp.bind(("127.0.0.1", port))
        tcp.bind(("127.0.0.1", port))
        assert udp.getsockname()[1] == tcp.getsockname()[1] == port


def test_free_port_skips_a_port_whose_tcp_side_is_taken(monkeypatch):
    """The kernel picks the UDP port; one taken over TCP is passed over for the next."""
    from tests.harness import ports

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        candidates = iter([taken, free_port()])

        class KernelPicksCandidates(socket.socket):
            def bind(self, address):
                if self.type == socket.SOCK_DGRAM and address[1] == 0:
                    address = (address[0], next(candidates))
                super().bind(address)

        monkeypatch.setattr(ports.socket, "socket", KernelPicksCandidates)
        chosen = ports.free_port()
    assert chosen not in (taken, 0)


@pytest.mark.parametrize("address,expected", [
    ("127.0.0.1:53", ("127.0.0.1", 53)), ("[::1]:5300", ("::1", 5300)),
    ("127.0.0.1", ("127.0.0.1", 53)), ("::1", ("::1", 53)),
])
def test_address_round_trip(address, expected):
    assert split_address(address) == expected
    if address.count(":") == 1 or address.startswith("["):
        assert format_address(*expected) == address


def test_readiness_fails_fast_with_the_log_when_the_process_dies(tmp_path):
    proc = start([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], tmp_path / "x.log")
    began = time.monotonic()
    with pytest.raises(StartupError, match="boom"):
        wait_for_dns("127.0.0.1", free_port(), proc=proc, timeout=10)
    assert time.monotonic() - began < 5
    assert proc.stop() == 3


def test_readiness_deadline_without_a_server():
    began = time.monotonic()
    with pytest.raises(StartupError):
        wait_for_dns("127.0.0.1", free_port(), timeout=0.5)
    assert time.monotonic() - began < 2


def test_stop_escalates_to_sigkill(tmp_path):
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)")
    proc = start([sys.executable, "-c", code], tmp_path / "stubborn.log")
    deadline = time.monotonic() + 5
    while "up" not in proc.log_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.stop(timeout=0.5) == -9


def test_taken_fixed_port_fails_with_the_servers_reason(tmp_path):
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        with pytest.raises(StartupError, match="(?i)address already in use"):
            start_unbound(tmp_path / "u", port=port, timeout=3)


def test_launch_retries_on_a_port_taken_meanwhile(tmp_path, monkeypatch):
    from tests.harness import procs

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        ports = iter([squatter.getsockname()[1], free_port()])
        monkeypatch.setattr(procs, "free_port", lambda host: next(ports))
        server = start_unbound(tmp_path / "u", timeout=3)
    try:
        assert server.alive()
        assert (tmp_path / "u" / "unbound.failed1.log").exists()
    finally:
        server.stop()
