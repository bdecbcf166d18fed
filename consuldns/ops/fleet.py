"""`workers = N` seen as one server: the worker in slot 0 asks every worker and merges.

Each worker serves the admin endpoints on its own unix socket in the supervisor's private
directory (ops/workers.py). For a request on the public admin port, the worker in slot 0
asks all of them (itself included) and merges: /metrics adds counters, histograms and gauges
up (upstream_up and last_reload_successful take the lowest value, build_info the highest),
/cache/flush reaches every worker and adds up what they dropped, and /cache answers with the
freshest entry any worker holds, with each worker's state beside it. A worker being replaced
is left out of /metrics and /cache (its replacement starts empty); a flush that misses a
worker says so with 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from consuldns.ops.workers import Worker

log = logging.getLogger("consuldns.admin")

ASK_TIMEOUT = 2.0
MUTATION_HEADER = "X-Consuldns-Admin"  # a POST needs it (ops/admin.py); any value will do
LOWEST = {"consuldns_upstream_up", "consuldns_config_last_reload_successful"}
HIGHEST = {"consuldns_build_info"}
STATE_ORDER = {"fresh": 0, "stale": 1, "miss": 2}

Reply = tuple[int, bytes] | None  # (HTTP status, body) of one worker, None if it did not answer


class Fleet:
    """Every worker's private admin socket, asked from slot 0."""

    def __init__(self, worker: Worker):
        self.worker = worker

    async def ask_all(self, method: str, target: str) -> list[Reply]:
        """Each worker's reply to one request, by slot."""
        slots = range(self.worker.count)
        return list(await asyncio.gather(*(self.ask(slot, method, target) for slot in slots)))

    async def ask(self, slot: int, method: str, target: str) -> Reply:
        """One worker's reply, or None when it does not answer (being replaced, say)."""
        request = (f"{method} {target} HTTP/1.1\r\nHost: worker-{slot}\r\n"
                   f"{MUTATION_HEADER}: 1\r\nConnection: close\r\n\r\n").encode("latin-1")
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(
                    str(self.worker.socket_path(slot)))
                try:
                    writer.write(request)
                    raw = await reader.read()  # to the end: the worker closes
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            log.warning("worker %d did not answer %s %s: %s", slot, method, target, exc)
            return None
        return _parse_response(raw)


def _parse_response(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return None


def _ok(reply: Reply) -> bool:
    return reply is not None and reply[0] == 200


def answered(replies: list[Reply]) -> list[bytes]:
    """The bodies of the workers that answered 200."""
    return [reply[1] for reply in replies if _ok(reply)]


def missing(replies: list[Reply]) -> list[int]:
    """The slots of the workers that did not answer 200."""
    return [slot for slot, reply in enumerate(replies) if not _ok(reply)]


def documents(replies: list[Reply]) -> list[dict | None]:
    """Each worker's JSON answer by slot; None for a worker that did not answer 200."""
    return [json.loads(reply[1]) if _ok(reply) else None for reply in replies]


# ------------------------------------------------------------ /metrics


def merge_metrics(texts: Iterable[bytes]) -> bytes:
    """One exposition of several workers' /metrics: every sample added up (see the module
    docstring for the exceptions)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode()):
            families.setdefault(family.name, family)
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = _combine(family.name, samples.get(key), sample.value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(families, values))
    return generate_latest(registry)


def _combine(name: str, before: float | None, value: float) -> float:
    if before is None:
        return value
    if name in LOWEST:
        return min(before, value)
    if name in HIGHEST:
        return max(before, value)
    return before + value


class _Merged:
    """A collector that yields the merged families."""

    def __init__(self, families: dict[str, Metric], values: dict[str, dict[tuple, float]]):
        self.families = families
        self.values = values

    def collect(self) -> Iterable[Metric]:
        for name, family in self.families.items():
            merged = Metric(name, family.documentation, family.type)
            for (sample_name, labels), value in self.values[name].items():
                merged.add_sample(sample_name, dict(labels), value)
            yield merged


# ------------------------------------------------------------ /cache and /cache/flush


def merge_lookup(views: list[dict | None]) -> dict:
    """The freshest worker's view of one question, and every worker's state beside it
    (views by slot, as documents() gives them; at least one answered)."""
    best = min((view for view in views if view is not None),
               key=lambda view: STATE_ORDER.get(view["state"], 3))
    states = {str(slot): view["state"] if view is not None else "unreachable"
              for slot, view in enumerate(views)}
    return {**best, "workers": states}


def merge_flush(bodies: list[bytes], count: int) -> dict:
    """What every worker dropped, added up."""
    documents = [json.loads(body) for body in bodies]
    return {"flushed": sum(d["flushed"] for d in documents),
            "name": documents[0]["name"] if documents else None, "workers": count}
