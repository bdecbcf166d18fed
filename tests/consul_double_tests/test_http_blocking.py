"""Blocking queries: what wakes a watch, what does not, timeouts, index resets."""

from __future__ import annotations

import random

from tests.consul_double.http_config import HttpConfig
from tests.consul_double.http_query import query_timeout
from tests.consul_double_tests import catalogs
from tests.consul_double_tests.httpclient import get, wait_until, watch

WEB = "/v1/health/service/web"
DUP = "/v1/health/service/dup"


def dns_visible(reply):
    """What a DNS answer can depend on, per instance (no Output, no raft indexes)."""
    return sorted((e["Node"]["Node"], e["Node"]["Address"], e["Service"]["ID"],
                   e["Service"]["Address"], e["Service"].get("Port"), e["Service"]["Tags"],
                   e["Service"]["Weights"]["Passing"], e["Service"]["Weights"]["Warning"],
                   sorted(c["Status"] for c in e["Checks"])) for e in reply.json())


def test_a_held_query_returns_when_its_service_changes(make_double):
    double = make_double()
    first = get(double, WEB)
    held = watch(double, WEB, first.index)
    assert not held.done()
    double.control.set_check("critical", service_id="web-1")
    reply = held.result(5)
    assert reply.index > first.index
    web1 = next(e for e in reply.json() if e["Service"]["ID"] == "web-1")
    assert web1["Checks"][0]["Status"] == "critical"  # the status change is visible at once


def test_a_timeout_returns_the_same_index_and_body_after_wait(make_double):
    double = make_double()
    first = get(double, WEB)
    reply = get(double, f"{WEB}?index={first.index}&wait=400ms")
    assert (reply.index, reply.body) == (first.index, first.body)
    assert 0.4 <= reply.elapsed < 0.4 * 17 / 16 + 0.5


def test_index_zero_or_absent_answers_at_once(make_double):
    double = make_double()
    assert get(double, f"{WEB}?index=0&wait=5s").elapsed < 1


def test_an_older_index_answers_at_once(make_double):
    double = make_double()
    double.control.set_check("warning", service_id="web-1")
    current = get(double, WEB).index
    reply = get(double, f"{WEB}?index={current - 1}&wait=5s")
    assert reply.index == current and reply.elapsed < 1


def test_other_services_do_not_wake_the_watch(make_double):
    double = make_double()
    first = get(double, DUP)
    held = watch(double, DUP, first.index, wait="600ms")
    double.control.set_check("critical", service_id="web-1")
    double.control.register_service("other", "node2", id="other-1", port=1)
    reply = held.result(5)
    assert reply.index == first.index and reply.elapsed >= 0.6


def test_a_node_level_check_wakes_every_service_on_that_node(make_double):
    double = make_double()
    before = {p: get(double, p).index for p in (WEB, DUP, "/v1/health/service/v6svc")}
    held = watch(double, DUP, before[DUP])
    double.control.set_check("critical", node="node1")  # serfHealth on node1
    assert held.result(5).index > before[DUP]
    assert get(double, WEB).index > before[WEB]  # web-1 is on node1 too
    assert get(double, "/v1/health/service/v6svc").index == before["/v1/health/service/v6svc"]


def test_output_only_change_gives_a_new_index_with_identical_dns_data(make_double):
    double = make_double()
    first = get(double, "/v1/health/service/health")
    held = watch(double, "/v1/health/service/health", first.index)
    double.control.set_check("passing", service_id="h-pass", output="HTTP GET: 200 OK (12ms)")
    reply = held.result(5)
    assert reply.index > first.index and reply.body != first.body
    assert dns_visible(reply) == dns_visible(first)


def test_output_only_changes_are_deferred_status_changes_are_not(make_double):
    double = make_double()
    double.control.set_http_config(check_update_interval="600ms")  # waits 0.3s to 0.9s
    path = "/v1/health/service/health"
    first = get(double, path)
    double.control.set_check("passing", service_id="h-pass", output="slow")
    assert get(double, path).index == first.index  # still held back by the agent
    outputs = lambda: [c["Output"] for e in get(double, path).json() for c in e["Checks"]
                       if c["ServiceID"] == "h-pass"]
    wait_until(lambda: outputs() == ["slow"], timeout=3)
    assert get(double, path).index > first.index
    double.control.set_check("passing", service_id="h-pass", output="again")
    double.control.set_check("critical", service_id="h-pass")  # syncs now, latest output
    assert outputs() == ["again"]


def test_deferral_timing_follows_the_check_update_interval(make_double):
    double = make_double()
    double.control.set_http_config(check_update_interval="400ms")
    path = "/v1/health/service/health"
    first = get(double, path)
    double.control.set_check("passing", service_id="h-pass", output="x")
    reply = get(double, f"{path}?index={first.index}&wait=3s")
    assert reply.index > first.index and 0.2 <= reply.elapsed < 0.6 + 0.5


def test_tag_weight_and_meta_edits_bump_the_index(make_double):
    double = make_double()
    for change in ({"tags": ["v1", "canary"]}, {"weights": {"passing": 5, "warning": 1}},
                   {"meta": {"version": "3"}}, {"port": 9999}):
        before = get(double, WEB).index
        held = watch(double, WEB, before)
        double.control.update_service("web-1", **change)
        assert held.result(5).index > before, change


def test_node_record_edits_bump_the_services_on_the_node(make_double):
    double = make_double()
    before = get(double, WEB).index
    double.control.update_node("node2", meta={"rack": "r9"})
    reply = get(double, WEB)
    assert reply.index > before
    nodes = {e["Node"]["Node"]: e["Node"] for e in reply.json()}
    assert nodes["node2"]["Meta"]["rack"] == "r9"
    assert nodes["node2"]["ModifyIndex"] == reply.index > nodes["node2"]["CreateIndex"]
    assert nodes["node1"]["ModifyIndex"] < reply.index


def test_a_write_that_changes_nothing_does_not_bump(make_double):
    double = make_double()
    double.control.set_check("passing", service_id="web-1")
    before = get(double, WEB).index
    double.control.set_check("passing", service_id="web-1")
    double.control.update_service("web-1", port=8080)
    assert get(double, WEB).index == before


def test_registration_and_deregistration_wake_the_service(make_double):
    double = make_double()
    before = get(double, WEB).index
    held = watch(double, WEB, before)
    double.control.register_service("web", "node2", id="web-4", port=1)
    added = held.result(5)
    assert added.index > before and len(added.json()) == 4
    held = watch(double, WEB, added.index)
    double.control.deregister_service("web-4")
    removed = held.result(5)
    assert removed.index > added.index and len(removed.json()) == 3


def test_a_missing_service_wakes_when_any_service_goes_extinct(make_double):
    double = make_double()
    missing = "/v1/health/service/not-yet"
    before = get(double, missing).index
    double.control.deregister_service("web-3")  # web still has instances: no extinction
    assert get(double, missing).index == before
    held = watch(double, missing, before)
    double.control.deregister_service("v6svc")  # v6svc's last instance
    reply = held.result(5)
    assert reply.index > before and reply.body == b"[]"
    assert get(double, "/v1/health/service/v6svc").index == reply.index


def test_a_registered_service_reports_its_own_index_again(make_double):
    double = make_double()
    double.control.deregister_service("v6svc")
    gone = get(double, "/v1/health/service/v6svc").index
    double.control.register_service("v6svc", "v6node", id="v6svc", port=7000)
    assert get(double, "/v1/health/service/v6svc").index > gone


def test_catalog_services_moves_on_registration_and_tags_not_on_health(make_double):
    double = make_double()
    path = "/v1/catalog/services"
    before = get(double, path).index
    double.control.set_check("critical", service_id="web-1")
    double.control.set_check("critical", node="node2")
    assert get(double, path).index == before
    held = watch(double, path, before)
    double.control.update_service("web-2", tags=["v2", "blue"])
    tagged = held.result(5)
    assert tagged.index > before and "blue" in tagged.json()["web"]
    double.control.register_service("fresh", "node1", port=1)
    assert "fresh" in get(double, path).json() and get(double, path).index > tagged.index


def test_snapshot_restore_returns_held_queries_with_a_lower_index(make_double):
    double = make_double()
    for status in ("warning", "critical", "passing"):
        double.control.set_check(status, service_id="web-1")
    high = get(double, WEB).index
    held = watch(double, WEB, high)
    double.control.restore_snapshot(index=2)
    reply = held.result(5)
    assert reply.index == 2 < high and reply.elapsed < 3
    double.control.set_check("critical", service_id="web-2")
    assert get(double, WEB).index == 3  # later writes count on from the restored index
    assert get(double, "/v1/health/service/unknown").index >= 1


def test_a_client_that_keeps_the_old_index_misses_updates_after_a_restore(make_double):
    double = make_double()
    for status in ("warning", "critical", "passing"):
        double.control.set_check(status, service_id="web-1")
    stale_index = get(double, WEB).index
    double.control.restore_snapshot(index=1)
    double.control.set_check("critical", service_id="web-2")
    reply = get(double, f"{WEB}?index={stale_index}&wait=300ms")
    assert reply.index < stale_index and reply.elapsed >= 0.3  # blocked through the change


def test_index_resets_to_at_least_one(make_double):
    double = make_double()
    double.control.restore_snapshot(index=1)
    assert get(double, WEB).index == 1 and get(double, "/v1/catalog/services").index == 1


def test_connect_and_ingress_watches_wake_on_their_instances(make_double):
    double = make_double(catalog=catalogs.mesh())
    connect, ingress = "/v1/health/connect/web", "/v1/health/ingress/web"
    before = {p: get(double, p).index for p in (connect, ingress)}
    held = watch(double, connect, before[connect])
    double.control.set_check("critical", service_id="web-native")
    assert held.result(5).index > before[connect]
    held = watch(double, ingress, before[ingress])
    double.control.set_check("critical", service_id="gw-1", check_id="gw-alive")
    assert held.result(5).index > before[ingress]


def test_passing_filter_applies_after_the_index(make_double):
    double = make_double()
    path = "/v1/health/service/health?passing"
    first = get(double, path)
    held = watch(double, path, first.index)
    double.control.set_check("critical", service_id="h-crit", output="still down")
    reply = held.result(5)
    assert reply.index > first.index and reply.body == first.body  # woken, nothing visible


def test_max_query_time_caps_the_wait_and_default_query_time_fills_it(make_double):
    double = make_double()
    double.control.set_http_config(max_query_time="300ms", default_query_time="200ms")
    index = get(double, WEB).index
    capped = get(double, f"{WEB}?index={index}&wait=10m")
    assert 0.3 <= capped.elapsed < 0.3 * 17 / 16 + 0.5
    defaulted = get(double, f"{WEB}?index={index}")
    assert 0.2 <= defaulted.elapsed < 0.2 * 17 / 16 + 0.5
    negative = get(double, f"{WEB}?index={index}&wait=-5s")
    assert 0.2 <= negative.elapsed < 0.2 * 17 / 16 + 0.5


def test_query_timeout_defaults_caps_and_jitter():
    rng, config = random.Random(7), HttpConfig()
    for wait, base in ((0, 300.0), (-1, 300.0), (10, 10.0), (1200, 600.0), (0.5, 0.5)):
        samples = [query_timeout(wait, config, rng) for _ in range(200)]
        assert all(base <= s < base * 17 / 16 for s in samples)
        assert max(samples) - min(samples) > base / 32  # spread over the jitter range
