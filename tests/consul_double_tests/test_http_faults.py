"""HTTP faults and knobs: lost servers, no leader, ACLs, connection limit, HTTP down, DNS lag."""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from tests.consul_double_tests.dnsclient import ask, rcode, rdatas
from tests.consul_double_tests.httpclient import get, get_later, wait_until, watch

WEB = "/v1/health/service/web"
WEB_ADDRESSES = {"10.0.0.1", "10.0.0.2", "192.0.2.10"}


def web_addresses(double):
    return set(rdatas(ask(double, "web.service.consul").answer))


# -- lost servers, no leader --

def test_lost_servers_fail_reads_and_the_leader_probe_after_the_delay(make_double):
    double = make_double()
    double.control.set_fault("servfail", delay=0.3)
    for path in (WEB, "/v1/catalog/services", "/v1/status/leader"):
        reply = get(double, path)
        assert (reply.status, reply.body) == (500, b"No known Consul servers"), path
        assert reply.elapsed >= 0.3
    assert rcode(ask(double, "web.service.consul")) == "SERVFAIL"  # DNS agrees
    double.control.clear_faults()
    assert get(double, WEB).status == 200 and get(double, "/v1/status/leader").status == 200


def test_losing_the_servers_ends_a_held_query_with_500(make_double):
    double = make_double()
    held = watch(double, WEB, get(double, WEB).index, wait="10s")
    double.control.set_fault("servfail", delay=5)
    reply = held.result(5)
    assert reply.status == 500 and reply.elapsed < 4


def test_streaming_backend_serves_a_frozen_view_when_servers_are_lost(make_double):
    double = make_double()
    double.control.set_http_config(use_streaming_backend=True)
    index = get(double, WEB).index
    assert get(double, WEB).headers["X-Consul-Query-Backend"] == "blocking-query"  # index 0
    double.control.set_fault("servfail")
    double.control.set_check("critical", service_id="web-1")
    stale = get(double, f"{WEB}?index={index}&wait=500ms")  # not woken by the change
    assert stale.status == 200 and stale.headers["X-Consul-Query-Backend"] == "streaming"
    assert stale.index == index and stale.elapsed >= 0.5
    assert "X-Consul-KnownLeader" not in stale.headers
    assert all(c["Status"] != "critical" for e in stale.json() for c in e["Checks"])
    assert get(double, WEB).status == 500  # index 0 is an RPC: it fails
    assert get(double, "/v1/status/leader").status == 500  # how a watcher can tell
    double.control.clear_faults()
    fresh = get(double, f"{WEB}?index={stale.index}&wait=3s")
    assert fresh.index > stale.index


def test_no_leader_fails_default_reads_but_not_stale_ones(make_double):
    double = make_double()
    double.control.set_fault("no_leader")
    assert get(double, "/v1/status/leader").body == b'""'
    failed = get(double, WEB)
    assert (failed.status, failed.body) == (500, b"No cluster leader")
    stale = wait_until(lambda: (r := get(double, f"{WEB}?stale"))
                       and int(r.headers["X-Consul-LastContact"]) > 0 and r)
    assert stale.status == 200 and stale.headers["X-Consul-KnownLeader"] == "false"
    assert web_addresses(double) == WEB_ADDRESSES  # DNS reads stale: unaffected


# -- ACLs --

@pytest.fixture
def acl_double(make_double):
    double = make_double()
    double.control.set_http_config(acl_tokens={"web-reader": ["web"], "reads-all": [""]})
    return double


def test_an_unknown_token_is_refused(acl_double):
    reply = get(acl_double, WEB, token="no-such-token")
    assert (reply.status, reply.body) == (403, b"ACL not found")


def test_a_token_that_cannot_read_gets_an_empty_200(acl_double):
    reply = get(acl_double, "/v1/health/service/dup", token="web-reader")
    assert (reply.status, reply.body) == (200, b"[]") and reply.index >= 1
    assert reply.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    assert len(get(acl_double, WEB, token="web-reader").json()) == 3
    services = get(acl_double, "/v1/catalog/services", token="web-reader").json()
    assert list(services) == ["web"]


def test_token_sources(acl_double):
    assert len(get(acl_double, f"{WEB}?token=web-reader").json()) == 3
    bearer = get(acl_double, WEB, headers={"Authorization": "Bearer reads-all"})
    assert len(bearer.json()) == 3


def test_no_token_means_the_default_token_else_anonymous(acl_double):
    anonymous = get(acl_double, WEB)
    assert (anonymous.status, anonymous.body) == (200, b"[]")
    assert "X-Consul-Results-Filtered-By-ACLs" not in anonymous.headers  # masked
    acl_double.control.set_http_config(acl_default_token="reads-all")
    assert len(get(acl_double, WEB).json()) == 3


def test_acls_disabled_ignore_tokens(make_double):
    assert get(make_double(), WEB, token="anything").status == 200


# -- connection limit --

def open_sockets(double, count):
    socks = [socket.create_connection((double.http_host, double.http_port), timeout=3)
             for _ in range(count)]
    return socks


def test_connections_over_the_per_ip_limit_get_429(make_double):
    double = make_double()
    double.control.set_http_config(max_conns_per_client=3)
    socks = open_sockets(double, 3)
    wait_until(lambda: double.control.http_counters().connections.get("127.0.0.1") == 3)
    extra = get(double, "/v1/status/leader")
    assert extra.status == 429
    assert extra.body == (b"Your IP is issuing too many concurrent connections, "
                          b"please rate limit your calls\n")
    socks.pop().close()
    wait_until(lambda: double.control.http_counters().connections.get("127.0.0.1") == 2)
    assert get(double, "/v1/status/leader").status == 200
    counters = double.control.http_counters()
    assert counters.rejected == {"127.0.0.1": 1} and counters.max_connections["127.0.0.1"] == 3
    for sock in socks:
        sock.close()


def test_each_held_query_holds_one_connection(make_double):
    double = make_double()
    index = get(double, WEB).index
    double.control.reset_counters()
    held = [watch(double, WEB, index, wait="10s") for _ in range(4)]
    counters = double.control.http_counters()
    assert counters.held == {WEB: 4} and counters.connections == {"127.0.0.1": 4}
    double.control.set_check("critical", service_id="web-1")
    assert all(f.result(5).index > index for f in held)
    wait_until(lambda: not double.control.http_counters().connections)
    assert double.control.http_counters().max_connections_total == 4


def test_a_client_closing_a_held_query_frees_its_connection(make_double):
    double = make_double()
    index = get(double, WEB).index
    sock = socket.create_connection((double.http_host, double.http_port), timeout=3)
    sock.sendall(f"GET {WEB}?index={index}&wait=30s HTTP/1.1\r\n\r\n".encode())
    wait_until(lambda: double.control.http_counters().held_total == 1)
    sock.close()
    wait_until(lambda: double.control.http_counters().connections == {})
    assert double.control.http_counters().held_total == 0


def test_the_default_limit_is_200(make_double):
    assert make_double().control.http_config()["max_conns_per_client"] == 200


# -- HTTP down and up --

def test_http_down_refuses_and_drops_connections_then_comes_back(make_double):
    double = make_double()
    held = watch(double, WEB, get(double, WEB).index, wait="10s")
    double.control.set_fault("http_down")
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        held.result(5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((double.http_host, double.http_port), timeout=2)
    assert double.control.http_counters().connections == {}
    assert web_addresses(double) == WEB_ADDRESSES  # DNS stays up
    double.control.clear_faults()
    assert get(double, WEB).status == 200  # the same port again


# -- DNS lagging the HTTP view --

def test_dns_lags_the_http_view_by_the_set_delay(make_double):
    double = make_double()
    double.control.set_fault("dns_lag", delay=1.0)
    changed_at = time.monotonic()
    double.control.set_check("critical", service_id="web-1")
    statuses = [c["Status"] for e in get(double, WEB).json() if e["Service"]["ID"] == "web-1"
                for c in e["Checks"]]
    assert statuses == ["critical"]  # HTTP sees it at once
    assert web_addresses(double) == WEB_ADDRESSES  # DNS does not yet
    wait_until(lambda: web_addresses(double) == WEB_ADDRESSES - {"10.0.0.1"}, timeout=5)
    assert time.monotonic() - changed_at >= 1.0
    double.control.clear_faults()
    assert web_addresses(double) == WEB_ADDRESSES - {"10.0.0.1"}


def test_dns_lag_set_after_a_change_answers_from_before_it(make_double):
    double = make_double()
    double.control.deregister_service("web-3")
    double.control.set_fault("dns_lag", delay=60)
    assert web_addresses(double) == WEB_ADDRESSES  # web-3 was there a minute ago
    double.control.set_config(only_passing=True)  # config applies at once to the lagged view
    assert web_addresses(double) == WEB_ADDRESSES


def test_a_watch_started_with_get_later_can_time_out_cleanly(make_double):
    double = make_double()
    index = get(double, WEB).index
    reply = get_later(double, f"{WEB}?index={index}&wait=200ms").result(5)
    assert reply.index == index
