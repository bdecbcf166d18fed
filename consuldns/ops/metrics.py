"""Every metric of consuldns, built from the plain counters in Stats at scrape time.

The query path only bumps integers (stats.py); this collector turns them into Prometheus
families when /metrics is read, so a labelled counter is never touched per packet. Names
follow `consuldns_<subsystem>_<name>_total|_seconds`; docs/operations.md lists them and
tests/unit/test_metrics.py checks both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import dns.rcode
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from consuldns import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _counter(name: str, doc: str, value: float | None = None,
             labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value, labels=labels or None)


def _counter_by(name: str, doc: str, label: str,
                counts: Iterable[tuple[str, float]]) -> CounterMetricFamily:
    """A counter with one label, from (label value, count) pairs."""
    family = _counter(name, doc, labels=(label,))
    for value, count in counts:
        family.add_metric([value], count)
    return family


def _gauge(name: str, doc: str, value: float | None = None,
           labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, labels=labels or None)


class StatsCollector:
    """A prometheus_client collector over one process's Runtime (read live at each scrape)."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        yield from self._queries()
        yield from self._cache()
        yield from self._upstreams()
        yield from self._watch()
        yield from self._process()

    def _watch(self) -> Iterator[Metric]:
        stats, watcher = self.runtime.stats, self.runtime.watcher
        yield _gauge("consuldns_consul_watches", "Consul services watched through the agent's "
                     "HTTP API (blocking queries held).", watcher.watching())
        yield _gauge("consuldns_consul_servers_lost", "1 while the agent says it has no "
                     "servers (its DNS can only fail: cached answers are served stale).",
                     1 if watcher.servers.lost else 0)
        yield _counter("consuldns_consul_watch_wakeups", "Blocking queries that returned.",
                       stats.watch_wakeups)
        yield _counter("consuldns_consul_watch_changes", "Wakeups with a change DNS answers "
                       "can show (addresses, ports, tags, weights, health class).",
                       stats.watch_changes)
        yield _counter("consuldns_consul_watch_invalidations", "Cached answers dropped because "
                       "their service changed.", stats.watch_invalidations)
        yield _counter("consuldns_consul_watch_resets", "Watches whose index went backwards "
                       "(snapshot restore, another server's view): started again from 0.",
                       stats.watch_resets)
        yield _counter("consuldns_consul_watch_fallbacks", "Times a watch stopped vouching for "
                       "its answers (an error, a rate-limited wait, idle): they follow their "
                       "TTL again.", stats.watch_fallbacks)
        yield _counter_by("consuldns_consul_http_errors", "Failed requests to the agent's HTTP "
                          "API, by status (none: no answer).", "status",
                          sorted(stats.watch_http_errors.items()))

    def _queries(self) -> Iterator[Metric]:
        stats = self.runtime.stats
        yield _counter_by("consuldns_queries", "Queries received, by transport.", "transport",
                          ((transport, stats.queries[transport]) for transport in ("udp", "tcp")))
        yield _counter_by("consuldns_responses", "Replies sent, by rcode.", "rcode",
                          ((dns.rcode.to_text(rcode), count)
                           for rcode, count in sorted(stats.rcodes.items())))
        yield _counter_by("consuldns_zone_queries", "Queries answered from the cache or "
                          "upstream, by the zone they were routed to.", "zone",
                          sorted((stats.zone_hits + stats.zone_misses).items()))
        yield _counter("consuldns_packets_dropped", "Packets not answered: unreadable, a "
                       "response, or the send buffer was full.", stats.dropped)
        yield _counter("consuldns_queries_malformed", "Queries unreadable past the header "
                       "(FORMERR) or with an opcode other than QUERY (NOTIMP).",
                       stats.malformed)
        yield _counter("consuldns_queries_refused", "Queries answered REFUSED (client outside "
                       "acl.allow, over the rate limit, or class other than IN).", stats.refused)
        yield _counter("consuldns_queries_rate_limited", "Queries refused because the client "
                       "went over server.rate_limit.", stats.rate_limited)
        yield _counter("consuldns_queries_overload", "Queries or TCP connections turned away "
                       "(stale answer, SERVFAIL, or closed) over server.max_inflight, the "
                       "client's share of it, or server.max_tcp_connections.", stats.overload)
        yield _counter("consuldns_responses_truncated", "UDP replies sent with TC set.",
                       stats.truncated)

    def _cache(self) -> Iterator[Metric]:
        stats, cache = self.runtime.stats, self.runtime.cache
        yield _counter_by("consuldns_cache_hits", "Queries answered from a fresh cache entry, "
                          "by zone.", "zone", sorted(stats.zone_hits.items()))
        yield _counter_by("consuldns_cache_misses", "Queries that needed an upstream exchange, "
                          "by zone.", "zone", sorted(stats.zone_misses.items()))
        yield _counter("consuldns_cache_stale", "Stale answers served because upstream failed "
                       "(RFC 8767).", stats.stale)
        yield _counter("consuldns_cache_evictions", "Entries evicted to stay within cache.size "
                       "and cache.max_bytes.", cache.evictions)
        yield _counter("consuldns_cache_oversize", "Answers not cached because one would take "
                       "over a sixteenth of cache.max_bytes.", cache.oversize)
        yield _counter("consuldns_cache_refreshes", "Background refreshes (prefetch, stale "
                       "recheck) that got an answer.", stats.refreshes)
        yield _counter("consuldns_cache_coalesced", "Queries that shared another query's "
                       "upstream exchange instead of asking again.", stats.coalesced)
        yield _counter("consuldns_cache_coalesced_dropped", "Queries turned away (stale "
                       "answer, or none) because too many already waited on the same "
                       "exchange.", stats.coalesced_dropped)
        yield _counter("consuldns_cache_late_answers", "Upstream answers that came after the "
                       "deadline (the client had its SERVFAIL or stale answer) and were "
                       "cached for its retry.", stats.late_answers)
        yield _gauge("consuldns_cache_entries", "Entries in the cache.", len(cache))
        yield _gauge("consuldns_cache_bytes", "Bytes the cache's entries hold, as counted "
                     "against cache.max_bytes.", cache.bytes)

    def _upstreams(self) -> Iterator[Metric]:
        stats = self.runtime.stats
        labels = ("group", "server")
        up = _gauge("consuldns_upstream_up", "1 while the server is in rotation, 0 while it is "
                    "marked down and probed.", labels=labels)
        sent = _counter("consuldns_upstream_queries", "Queries sent to the server.",
                        labels=labels)
        failed = _counter("consuldns_upstream_failures", "Queries the server failed: timeout, "
                          "error reply, unreadable reply.", labels=labels)
        latency = HistogramMetricFamily("consuldns_upstream_request_duration_seconds",
                                        "Time the server took to give the answer that was used.",
                                        labels=labels)
        for group, _zone in self.runtime.router.groups():
            for server in group.servers:
                key = [group.name, server.address]
                up.add_metric(key, 0 if server.down_since is not None else 1)
                sent.add_metric(key, server.queries)
                failed.add_metric(key, server.errors)
                histogram = stats.upstream_latency.get(server)
                if histogram is not None:
                    latency.add_metric(key, histogram.cumulative(), histogram.total)
        yield from (up, sent, failed, latency)
        yield _counter("consuldns_upstream_unanswered", "Client queries answered SERVFAIL "
                       "because no server of their route answered.", stats.servfail)

    def _process(self) -> Iterator[Metric]:
        stats, listeners = self.runtime.stats, self.runtime.listeners
        yield _gauge("consuldns_inflight_queries", "Queries waiting for an upstream answer.",
                     self.runtime.handler.exchanges.waiting)
        yield _gauge("consuldns_tcp_connections", "Open client TCP connections.",
                     listeners.tcp.count)
        yield _counter_by("consuldns_config_reloads", "Configuration reloads (SIGHUP), by "
                          "result.", "result",
                          ((result, stats.reloads[result]) for result in ("success", "failure")))
        yield _gauge("consuldns_config_last_reload_successful", "1 when the last reload was "
                     "applied (or none happened), 0 when it was rejected.",
                     1 if stats.last_reload_ok else 0)
        info = _gauge("consuldns_build_info", "Always 1; the version as a label.",
                      labels=("version",))
        info.add_metric([__version__], 1)
        yield info


def registry_for(runtime) -> CollectorRegistry:
    """A registry holding only consuldns's own collector (no default process metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(runtime))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format for GET /metrics."""
    return generate_latest(registry)
