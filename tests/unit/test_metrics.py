"""Metric names (CoreDNS metric_naming_test style) and docs/operations.md's list of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consuldns.ops import app, metrics
from consuldns.ops.config import with_overrides
from consuldns.ops.settings import Settings

README = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
NAME = re.compile(r"^consuldns_[a-z][a-z0-9]*(_[a-z0-9]+)*$")
LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
BASE_UNITS = ("_seconds", "_bytes")
BAD_UNITS = ("_milliseconds", "_ms", "_microseconds", "_kilobytes")


@pytest.fixture(scope="module")
def families():
    settings = with_overrides(Settings(), upstream=["127.0.0.1:5399"], listen=["127.0.0.1:5398"])
    runtime = app.Runtime(settings)
    server = runtime.router.default.group.servers[0]
    runtime.stats.observe_upstream(server, 0.003)  # so the histogram has samples
    runtime.stats.zone_hits["."] += 1
    runtime.stats.rcodes[0] += 1
    text = metrics.exposition(metrics.registry_for(runtime)).decode()
    return list(text_string_to_metric_families(text))


def exported_names(families) -> set[str]:
    """Names as used in PromQL: counters with _total, histograms by their base name."""
    return {f.name + "_total" if f.type == "counter" else f.name for f in families}


def test_names_follow_the_conventions(families):
    problems = []
    for family in families:
        name = exported_names([family]).pop()
        if not NAME.match(name):
            problems.append(f"{name}: not consuldns_snake_case")
        if family.type != "counter" and name.endswith("_total"):
            problems.append(f"{name}: only counters end in _total")
        if family.type == "histogram" and not name.endswith(BASE_UNITS):
            problems.append(f"{name}: histograms need a base unit suffix {BASE_UNITS}")
        if any(unit in name for unit in BAD_UNITS):
            problems.append(f"{name}: use base units (seconds, bytes)")
        if not family.documentation or not family.documentation.endswith("."):
            problems.append(f"{name}: help text must be a sentence")
        for sample in family.samples:
            for label in sample.labels:
                if not LABEL.match(label) or (label == "le" and family.type != "histogram"):
                    problems.append(f"{name}: bad label {label!r}")
            if family.type == "counter" and not sample.name.endswith(("_total", "_created")):
                problems.append(f"{sample.name}: counter sample without _total")
    assert not problems, "\n".join(problems)


def test_readme_lists_exactly_the_exported_metrics(families):
    text = README.read_text()
    section = text.split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(consuldns_[a-z0-9_]+)`", section, re.MULTILINE))
    exported = exported_names(families)
    assert exported - listed == set(), "exported but not in docs/operations.md's Metrics table"
    assert listed - exported == set(), "in docs/operations.md but not exported"


def test_collector_reads_the_counters(families):
    by_name = {f.name: f for f in families}
    hits = by_name["consuldns_cache_hits"].samples
    assert [(s.labels, s.value) for s in hits if s.name.endswith("_total")] == [
        ({"zone": "."}, 1.0)]
    buckets = [s for s in by_name["consuldns_upstream_request_duration_seconds"].samples
               if s.name.endswith("_bucket")]
    le_5ms = next(s for s in buckets if s.labels["le"] == "0.005")
    le_2ms = next(s for s in buckets if s.labels["le"] == "0.0025")
    assert (le_2ms.value, le_5ms.value) == (0.0, 1.0)
    assert le_5ms.labels["server"] == "127.0.0.1:5399" and le_5ms.labels["group"] == "default"
