"""The agent HTTP API: endpoints, body shape, headers, framing, errors, transports."""

from __future__ import annotations

import socket

import pytest

from tests.consul_double.http_wire import Response, encode_response
from tests.consul_double_tests import catalogs
from tests.consul_double_tests.dnsclient import ask, rdatas
from tests.consul_double_tests.httpclient import connection, get, raw_exchange, request


@pytest.fixture(scope="module")
def mesh_double():
    """One in-process double with catalogs.mesh(); tests here must not change it."""
    from tests.consul_double import start_in_thread

    double = start_in_thread(catalogs.mesh())
    yield double
    double.stop()


def by_id(reply):
    return {entry["Service"]["ID"]: entry for entry in reply.json()}


def test_health_service_lists_every_instance_in_consul_shape(mesh_double):
    reply = get(mesh_double, "/v1/health/service/web")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    entries = by_id(reply)
    assert set(entries) == {"web-1", "web-2", "web-3", "web-native"}
    web3 = entries["web-3"]
    assert set(web3) == {"Node", "Service", "Checks"}
    assert web3["Node"]["Node"] == "node3" and web3["Node"]["Datacenter"] == "dc1"
    assert web3["Node"]["TaggedAddresses"] == {"lan": "10.0.0.3", "lan_ipv4": "10.0.0.3",
                                               "lan_ipv6": "fd00::3", "wan": "10.0.0.3",
                                               "wan_ipv4": "10.0.0.3"}
    service = web3["Service"]
    assert (service["ID"], service["Service"], service["Tags"], service["Port"]) == \
        ("web-3", "web", ["v1"], 8081)
    assert service["Address"] == "192.0.2.10"
    assert service["TaggedAddresses"]["lan_ipv4"] == {"Address": "192.0.2.10", "Port": 8081}
    assert service["Weights"] == {"Passing": 1, "Warning": 1} and "Kind" not in service
    assert service["CreateIndex"] >= 1 and service["ModifyIndex"] >= service["CreateIndex"]
    assert entries["web-native"]["Service"]["Connect"] == {"Native": True}
    assert entries["web-native"]["Service"]["Meta"] == {"version": "2"}


def test_checks_include_node_level_checks_and_maintenance_is_critical(mesh_double):
    sick = get(mesh_double, "/v1/health/service/db").json()[0]["Checks"]
    assert [(c["CheckID"], c["Name"], c["Status"], c["ServiceID"]) for c in sick] == \
        [("serfHealth", "Serf Health Status", "critical", "")]
    maint = by_id(get(mesh_double, "/v1/health/service/health"))["h-maint"]["Checks"][0]
    assert maint["Status"] == "critical" and maint["ServiceName"] == "health"
    gateway_check = get(mesh_double, "/v1/health/service/gateway").json()[0]["Checks"][0]
    assert gateway_check["Output"] == "ok" and gateway_check["ServiceTags"] == []


def test_unknown_service_is_an_empty_array_with_an_index(mesh_double):
    reply = get(mesh_double, "/v1/health/service/no-such-service")
    assert reply.status == 200 and reply.body == b"[]" and reply.index >= 1


def test_connect_lists_only_mesh_capable_instances(mesh_double):
    reply = get(mesh_double, "/v1/health/connect/web")
    assert [e["Service"]["ID"] for e in reply.json()] == ["web-native"] and reply.index >= 1


def test_ingress_lists_the_gateways_and_dns_answers_them(mesh_double):
    reply = get(mesh_double, "/v1/health/ingress/web")
    entries = reply.json()
    assert [(e["Service"]["ID"], e["Service"]["Kind"]) for e in entries] == \
        [("gw-1", "ingress-gateway")]
    assert rdatas(ask(mesh_double, "web.ingress.consul").answer) == ["10.0.0.3"]
    assert get(mesh_double, "/v1/health/ingress/dup").body == b"[]"


def test_tag_and_passing_filters(mesh_double):
    tagged = get(mesh_double, "/v1/health/service/web?tag=V1").json()
    assert {e["Service"]["ID"] for e in tagged} == {"web-1", "web-3"}
    both = get(mesh_double, "/v1/health/service/web?tag=v1&tag=a.b").json()
    assert [e["Service"]["ID"] for e in both] == ["web-1"]
    passing = get(mesh_double, "/v1/health/service/health?passing").json()
    assert [e["Service"]["ID"] for e in passing] == ["h-pass"]
    assert len(get(mesh_double, "/v1/health/service/health?passing=false").json()) == 5


def test_other_datacenters_and_unknown_ones(mesh_double):
    remote = get(mesh_double, "/v1/health/service/api?dc=dc2").json()
    assert [e["Node"]["Datacenter"] for e in remote] == ["dc2"]
    assert get(mesh_double, "/v1/health/service/api").body == b"[]"
    unknown = get(mesh_double, "/v1/health/service/web?dc=nowhere")
    assert (unknown.status, unknown.body) == (500, b"No path to datacenter")


def test_enterprise_parameters_are_refused_and_peers_are_empty(mesh_double):
    reply = get(mesh_double, "/v1/health/service/web?ns=team")
    assert (reply.status, reply.body) == (
        400, b'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature')
    reply = get(mesh_double, "/v1/health/service/web", headers={"X-Consul-Partition": "p"})
    assert (reply.status, reply.body) == (
        400, b'Invalid header: "X-Consul-Partition" - Partitions are a Consul Enterprise feature')
    assert get(mesh_double, "/v1/health/service/web?peer=other").body == b"[]"


def test_catalog_services_maps_names_to_merged_tags(mesh_double):
    reply = get(mesh_double, "/v1/catalog/services")
    services = reply.json()
    assert services["web"] == ["a.b", "v1", "v2"] and services["consul"] == []
    assert "api" not in services and reply.index >= 1


def test_status_leader(mesh_double):
    reply = get(mesh_double, "/v1/status/leader")
    assert (reply.status, reply.body) == (200, b'"127.0.0.1:8300"')
    assert "X-Consul-Index" not in reply.headers


def test_agent_self_reports_the_connection_limit(mesh_double):
    body = get(mesh_double, "/v1/agent/self").json()
    assert body["DebugConfig"]["HTTPMaxConnsPerClient"] == 200
    assert body["Config"]["Datacenter"] == "dc1"


def test_consistency_headers(mesh_double):
    default = get(mesh_double, "/v1/health/service/web")
    assert default.headers["X-Consul-Effective-Consistency"] == "leader"
    assert default.headers["X-Consul-KnownLeader"] == "true"
    assert default.headers["X-Consul-LastContact"] == "0"
    assert default.headers["X-Consul-Query-Backend"] == "blocking-query"
    stale = get(mesh_double, "/v1/health/service/web?stale")
    assert stale.headers["X-Consul-Effective-Consistency"] == "stale"
    consistent = get(mesh_double, "/v1/health/service/web?consistent")
    assert consistent.headers["X-Consul-Effective-Consistency"] == "consistent"


@pytest.mark.parametrize("path, message", [
    ("/v1/health/service/web?wait=10", b"Invalid wait time"),
    ("/v1/health/service/web?wait=soon", b"Invalid wait time"),
    ("/v1/health/service/web?index=-1", b"Invalid index"),
    ("/v1/health/service/web?index=1.5", b"Invalid index"),
    ("/v1/health/service/web?index=18446744073709551616", b"Invalid index"),
    ("/v1/health/service/web?stale&consistent",
     b"Cannot specify ?stale with ?consistent, conflicting semantics."),
    ("/v1/health/service/web?cached&consistent",
     b"Cannot specify ?cached with ?consistent, conflicting semantics."),
    ("/v1/health/service/", b"Missing service name"),
    ("/v1/catalog/services?wait=1x", b"Invalid wait time"),
])
def test_bad_requests_get_400_with_consuls_text(mesh_double, path, message):
    reply = get(mesh_double, path)
    assert (reply.status, reply.body) == (400, message)
    assert reply.headers["Content-Type"].startswith("text/plain")


def test_unknown_paths_and_methods(mesh_double):
    assert get(mesh_double, "/v1/kv/anything").status == 404
    conn = connection(mesh_double)
    conn.request("PUT", "/v1/health/service/web", body=b"{}")
    response = conn.getresponse()
    assert (response.status, response.read()) == (405, b"method PUT not allowed")
    conn.close()


def head_and_body(raw: bytes) -> tuple[str, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode(), body


def test_small_bodies_have_content_length_large_ones_are_chunked(mesh_double):
    small = raw_exchange(mesh_double, b"GET /v1/health/service/nope HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
    head, body = head_and_body(small)
    assert "\r\nContent-Length: 2\r\n" in head and "Transfer-Encoding" not in head
    assert body == b"[]"
    large = raw_exchange(mesh_double, b"GET /v1/health/service/big HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
    head, body = head_and_body(large)
    assert "\r\nTransfer-Encoding: chunked\r\n" in head and "Content-Length" not in head
    assert body.endswith(b"\r\n0\r\n\r\n")
    assert int(body.split(b"\r\n", 1)[0], 16) > 2048


def test_the_chunking_threshold_is_2048_bytes():
    at_limit = encode_response(Response(200, b"x" * 2048), keep_alive=True)
    over = encode_response(Response(200, b"x" * 2049), keep_alive=True)
    assert b"Content-Length: 2048\r\n" in at_limit and b"chunked" not in at_limit
    assert b"Transfer-Encoding: chunked\r\n" in over and b"Content-Length" not in over


def test_headers_go_out_in_gos_canonical_case(mesh_double):
    head, _ = head_and_body(raw_exchange(
        mesh_double, b"GET /v1/health/service/web HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert "\r\nX-Consul-Knownleader: true\r\n" in head
    assert "\r\nX-Consul-Lastcontact: 0\r\n" in head


def test_keep_alive_serves_several_requests_on_one_connection(make_double):
    double = make_double()
    conn = connection(double)
    replies = [request(conn, "/v1/health/service/web") for _ in range(3)]
    conn.close()
    assert [r.status for r in replies] == [200, 200, 200]
    counters = double.control.http_counters()
    assert counters.max_connections == {"127.0.0.1": 1}
    assert counters.count("health_service", "/v1/health/service/web", 200) == 3


def test_http_10_and_connection_close_end_the_connection(mesh_double):
    for head in (b"GET /v1/status/leader HTTP/1.0\r\n\r\n",
                 b"GET /v1/status/leader HTTP/1.1\r\nConnection: close\r\n\r\n"):
        reply = raw_exchange(mesh_double, head, timeout=3)  # returns only once closed
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in reply


def test_a_malformed_request_gets_400_and_a_close(mesh_double):
    reply = raw_exchange(mesh_double, b"NONSENSE\r\n\r\n", timeout=3)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_unix_socket_listener(make_double, tmp_path):
    path = str(tmp_path / "consul.sock")
    double = make_double(http_port=None, http_unix=path)
    assert (double.http_address, double.http_url) == (f"unix://{path}", None)
    reply = get(double, "/v1/health/service/web")
    assert reply.status == 200 and len(reply.json()) == 3
    assert double.control.http_counters().max_connections == {"unix": 1}


def test_no_http_listener_when_disabled(make_double):
    double = make_double(http_port=None)
    assert double.http_address is None and double.app.http is None


def test_ipv6_loopback_http(make_double):
    double = make_double(host="::1")
    assert double.http_url == f"http://[::1]:{double.http_port}"
    with socket.create_connection(("::1", double.http_port), timeout=3) as sock:
        sock.sendall(b"GET /v1/status/leader HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
