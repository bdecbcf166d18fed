"""A few facts seen through dig, a client that forgives nothing silently."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) missing")


def dig(double, *args: str) -> str:
    command = ["dig", f"@{double.host}", "-p", str(double.port), "+time=2", "+tries=1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=10,
                          check=False).stdout


def test_dig_sees_aa_and_no_ra(double):
    out = dig(double, "web.service.consul", "A")
    assert "status: NOERROR" in out and "flags: qr aa rd;" in out
    assert "ANSWER: 3" in out


def test_dig_sees_silent_trimming_without_tc(double):
    out = dig(double, "+noedns", "big.service.consul", "A")
    assert "ANSWER: 3," in out and " tc" not in out.split("flags:")[1].split(";")[0]


def test_dig_over_tcp_gets_everything(double):
    assert "ANSWER: 20," in dig(double, "+tcp", "big.service.consul", "A")


def test_dig_edns_reply(modern, legacy):
    edns_line = "; EDNS: version: 0, flags:; udp: 1232"
    assert edns_line in dig(modern, "+bufsize=1232", "web.service.consul")
    assert "EDNS" not in dig(legacy, "+bufsize=1232", "web.service.consul")
