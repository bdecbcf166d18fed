"""Messages that say what to do (issue 14), as pure functions: why an address could not be
bound, which servers are consuldns itself, what a reload kept, how --explain reads a cache
entry. The same texts are asserted from real processes in tests/e2e/test_messages.py."""

from __future__ import annotations

import errno
import os
import socket
import sys

import pytest

from consuldns import address
from consuldns.cli import explain
from consuldns.ops import binding
from consuldns.ops.config import resolv_conf_servers
from consuldns.ops.reload import _flushed_text
from consuldns.serve.listeners import BindError, bind


def bind_error(code: int, port: int = 53, protocol: str = "udp",
               host: str = "127.0.0.1") -> BindError:
    return BindError(host, port, protocol, OSError(code, os.strerror(code)))


@pytest.fixture
def as_uid(monkeypatch):
    def set_uid(uid: int) -> None:
        monkeypatch.setattr(binding.os, "geteuid", lambda: uid)
    return set_uid


def test_low_port_without_root_lists_every_way_to_bind_it(as_uid):
    as_uid(1000)
    text = binding.bind_error_text(bind_error(errno.EACCES, host="::1"))
    assert text.startswith("cannot bind [::1]:53 (udp): permission denied: port 53 is below "
                           "1024 and this process is not root. Start consuldns as root")
    assert "config/consuldns.service (CAP_NET_BIND_SERVICE)" in text
    assert f"setcap cap_net_bind_service+ep {os.path.realpath(sys.executable)}" in text
    assert text.endswith("listen on a port >= 1024 (--listen [::1]:5353)")


def test_low_port_as_root_without_the_capability(as_uid):
    as_uid(0)
    assert binding.bind_error_text(bind_error(errno.EACCES)) == (
        "cannot bind 127.0.0.1:53 (udp): permission denied: port 53 needs "
        "CAP_NET_BIND_SERVICE, which this root process lacks (a container or unit that drops "
        "capabilities?): grant it, or listen on a port >= 1024")


def test_low_port_after_dropping_root_says_restart(as_uid):
    as_uid(65534)
    text = binding.bind_error_text(bind_error(errno.EACCES, port=853), dropped_root=True)
    assert text.startswith("cannot bind 127.0.0.1:853 (udp): permission denied. After "
                           "dropping privileges consuldns can no longer bind ports below 1024")


@pytest.mark.parametrize("protocol,flags", [("udp", "-lunp"), ("tcp", "-ltnp")])
def test_port_in_use_names_who_may_hold_it_and_how_to_see(protocol, flags):
    text = binding.bind_error_text(bind_error(errno.EADDRINUSE, protocol=protocol))
    assert text.startswith(f"cannot bind 127.0.0.1:53 ({protocol}): address already in use: "
                           "another server holds port 53 on this address (dnsmasq, "
                           "systemd-resolved on 127.0.0.53,")
    assert f"`ss {flags} 'sport = :53'` shows which" in text


def test_address_this_host_lacks():
    text = binding.bind_error_text(bind_error(errno.EADDRNOTAVAIL, host="192.0.2.7"))
    assert "no interface of this host has 192.0.2.7 (`ip -brief address` lists them)" in text


def test_other_errors_keep_the_reason():
    assert binding.bind_error_text(bind_error(errno.EINVAL, port=5353)) == (
        "cannot bind 127.0.0.1:5353 (udp): invalid argument")


def test_bind_names_the_protocol_that_failed():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(BindError) as raised:
            bind([("127.0.0.1", port)])
    assert (raised.value.host, raised.value.port, raised.value.protocol) == (
        "127.0.0.1", port, "tcp")
    assert raised.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize("server,listen,loops", [
    (("127.0.0.1", 53), ("127.0.0.1", 53), True),
    (("127.0.0.1", 53), ("127.0.0.1", 5353), False),
    (("127.0.0.53", 53), ("0.0.0.0", 53), True),
    (("0.0.0.0", 53), ("0.0.0.0", 53), True),
    (("192.0.2.1", 53), ("0.0.0.0", 53), False),  # maybe ours, maybe not: not refused
    (("::1", 53), ("0.0.0.0", 53), False),  # an IPv4 socket never sees it
    (("::1", 53), ("::", 53), True),
    (("0:0::1", 53), ("::1", 53), True),
    (("127.0.0.2", 53), ("127.0.0.1", 53), False),
])
def test_which_servers_are_consuldns_itself(server, listen, loops):
    assert address.reaches(server, listen) is loops


@pytest.mark.parametrize("one,other,overlap", [
    (("127.0.0.1", 5353), ("127.0.0.1", 5353), True),
    (("127.0.0.1", 5353), ("0.0.0.0", 5353), True),
    (("0.0.0.0", 5353), ("10.0.0.5", 5353), True),
    (("::", 5353), ("::1", 5353), True),
    (("0:0::1", 5353), ("::1", 5353), True),
    (("127.0.0.1", 5353), ("127.0.0.1", 5354), False),
    (("127.0.0.1", 5353), ("10.0.0.5", 5353), False),
    (("0.0.0.0", 5353), ("::", 5353), False),  # IPv6 sockets are IPv6-only
    (("0.0.0.0", 5353), ("::1", 5353), False),
])
def test_which_listen_addresses_take_the_same_port(one, other, overlap):
    assert address.overlaps(one, other) is overlap
    assert address.overlaps(other, one) is overlap


def test_listen_addresses_parse_to_one_spelling():
    assert address.parse_listen("127.0.0.1:05353") == address.parse_listen("127.0.0.1:5353")
    assert address.parse_listen("[0:0::1]:53") == ("::1", 53)


def test_resolv_conf_drops_only_ourselves(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\n"
                    "nameserver fe80::1%eth0\n")
    assert resolv_conf_servers(str(path), [("0.0.0.0", 53)]) == ["::1", "10.0.0.2", "fe80::1"]
    assert resolv_conf_servers(str(path), [("127.0.0.1", 53)]) == [
        "127.0.0.53", "::1", "10.0.0.2", "fe80::1"]


def test_a_reload_that_kept_the_whole_cache_says_only_that():
    assert _flushed_text(set()) == "cache kept"
    assert _flushed_text({"corp.example.", "consul."}) == (
        "cache kept except zones consul., corp.example.")


# ------------------------------------------------------------------ --explain's cache line


def entry(state: str, own_lifetime: int, pinned: bool = False, **more) -> dict:
    return {"state": state, "rcode": "NOERROR", "own_lifetime": own_lifetime, "pinned": pinned,
            **more}


def test_a_ttl0_answer_reads_as_expected_not_as_a_fault():
    text = explain._cache_text(entry("stale", 0, expired_for=0.2, ttl_left=0))
    assert text.startswith("not kept (TTL 0: consuldns asks the agent for every query, "
                           "as expected")
    assert "stale" not in text and "expired" not in text


def test_a_pinned_answer_says_the_watch_keeps_it():
    assert explain._cache_text(entry("fresh", 0, pinned=True, ttl_left=290.5, lifetime=300)) == (
        "fresh (NOERROR, TTL 0 but pinned by the watch: 290.5 s left of 300)")


def test_answers_with_a_ttl_keep_their_wording():
    assert explain._cache_text(entry("fresh", 60, ttl_left=12.0, lifetime=60)) == (
        "fresh (NOERROR, TTL left 12.0 s of 60)")
    assert explain._cache_text(entry("stale", 60, expired_for=3.0, ttl_left=0)) == (
        "stale (expired 3.0 s ago)")
    assert explain._cache_text({"state": "miss"}) == "miss"


def test_instances_are_written_host_port_with_ipv6_in_brackets():
    lines = explain._instances_text([
        {"address": "2001:db8::5", "port": 8080, "node": "n1", "health": "passing"},
        {"address": "10.0.0.5", "port": 8080, "node": "n2", "health": "passing"},
        {"address": "10.0.0.6", "port": 0, "node": "n3", "health": "passing"}])
    assert lines[1:] == [";;   [2001:db8::5]:8080 on n1: passing",
                         ";;   10.0.0.5:8080 on n2: passing", ";;   10.0.0.6 on n3: passing"]


@pytest.mark.parametrize("watch,text", [
    ({"state": "off"}, "off (consul.http): .consul answers are kept by their TTL alone"),
    ({"service": "service web", "state": "not watched"}, "service web not watched"),
    ({"service": "service web", "state": "watching", "pinned_answers": 2, "problem": None},
     "service web watching, 2 answers pinned"),
    ({"service": "service db", "state": "failing", "pinned_answers": 0,
      "problem": "HTTP 403"}, "service db failing, 0 answers pinned; HTTP 403"),
])
def test_the_watch_line(watch, text):
    assert explain._watch_text(watch) == text
