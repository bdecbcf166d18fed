"""The admin listener of `consuldns serve` from a test: HTTP requests and /metrics samples."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None
         ) -> tuple[int, str]:
    """(status, body) of one request to the admin listener; POSTs carry the header that
    mutations need (ops/admin.MUTATION_HEADER) unless `headers` is given."""
    if headers is None:
        headers = {"X-Consuldns-Admin": "1"} if method == "POST" else {}
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(server) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = http(server.admin_url + "/metrics")
    assert status == 200, text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def cache_state(server, name: str, rdtype: str = "A") -> str:
    """GET /cache: "fresh", "stale" (expired, still held) or "miss" for one question."""
    query = urllib.parse.urlencode({"name": name, "type": rdtype})
    status, body = http(f"{server.admin_url}/cache?{query}")
    assert status == 200, body
    return json.loads(body)["state"]
