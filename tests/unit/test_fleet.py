"""Merging the workers' admin answers in slot 0 (ops/fleet.py)."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from consuldns.ops import fleet

WORKER_0 = b"""# HELP consuldns_queries_total Queries received, by transport.
# TYPE consuldns_queries_total counter
consuldns_queries_total{transport="udp"} 7.0
consuldns_queries_total{transport="tcp"} 1.0
# HELP consuldns_cache_entries Entries in the cache.
# TYPE consuldns_cache_entries gauge
consuldns_cache_entries 5.0
# HELP consuldns_upstream_up 1 while in rotation.
# TYPE consuldns_upstream_up gauge
consuldns_upstream_up{group="default",server="192.0.2.1:53"} 1.0
# HELP consuldns_upstream_request_duration_seconds Time.
# TYPE consuldns_upstream_request_duration_seconds histogram
consuldns_upstream_request_duration_seconds_bucket{le="0.1"} 2.0
consuldns_upstream_request_duration_seconds_bucket{le="+Inf"} 3.0
consuldns_upstream_request_duration_seconds_count 3.0
consuldns_upstream_request_duration_seconds_sum 0.5
# HELP consuldns_build_info Always 1.
# TYPE consuldns_build_info gauge
consuldns_build_info{version="1.0"} 1.0
"""
WORKER_1 = WORKER_0.replace(b'"udp"} 7.0', b'"udp"} 5.0').replace(
    b'"192.0.2.1:53"} 1.0', b'"192.0.2.1:53"} 0.0').replace(b"entries 5.0", b"entries 2.0")


def samples(text: bytes) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples}


def test_metrics_are_added_up_but_up_is_the_lowest_and_build_info_stays_one():
    merged = samples(fleet.merge_metrics([WORKER_0, WORKER_1]))
    assert merged[("consuldns_queries_total", (("transport", "udp"),))] == 12
    assert merged[("consuldns_queries_total", (("transport", "tcp"),))] == 2
    assert merged[("consuldns_cache_entries", ())] == 7
    up = ("consuldns_upstream_up", (("group", "default"), ("server", "192.0.2.1:53")))
    assert merged[up] == 0
    assert merged[("consuldns_build_info", (("version", "1.0"),))] == 1
    assert merged[("consuldns_upstream_request_duration_seconds_bucket", (("le", "+Inf"),))] == 6
    assert merged[("consuldns_upstream_request_duration_seconds_sum", ())] == 1.0
    assert samples(fleet.merge_metrics([WORKER_0])) == samples(WORKER_0)


def test_the_cache_view_is_the_freshest_workers_with_every_state():
    miss = json.dumps({"name": "a.test.", "state": "miss"}).encode()
    fresh = json.dumps({"name": "a.test.", "state": "fresh", "ttl_left": 3}).encode()
    replies = [(200, miss), (200, fresh), None]
    view = fleet.merge_lookup(fleet.documents(replies))
    assert view["state"] == "fresh" and view["ttl_left"] == 3
    assert view["workers"] == {"0": "miss", "1": "fresh", "2": "unreachable"}
    assert fleet.missing(replies) == [2]


def test_a_flush_adds_up_what_each_worker_dropped():
    bodies = [json.dumps({"flushed": n, "name": "a.test."}).encode() for n in (2, 3)]
    assert fleet.merge_flush(bodies, 2) == {"flushed": 5, "name": "a.test.", "workers": 2}
