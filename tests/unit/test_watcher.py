"""The watcher in process, with the HTTP API scripted: what the states of a watch mean for
pinning, for the count of blocking queries held and for what /cache shows."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from consuldns.consul import watch as watch_module
from consuldns.consul.http import endpoint
from consuldns.consul.watch import State, Watcher, WatchSettings
from consuldns.dns import wire
from consuldns.serve.stats import Stats
from tests.unit.fakes import Clock, run

WEB = wire.text_to_name("web.service.consul")
SETTINGS = WatchSettings(endpoint("127.0.0.1:8500", "", {}, {}),
                         domains=(wire.text_to_name("consul"),), settle=2.0)
INSTANCE = {"Node": {"Node": "n1", "Address": "10.0.0.1", "TaggedAddresses": {}, "Meta": {}},
            "Service": {"ID": "web", "Service": "web", "Tags": [], "Address": "", "Port": 80,
                        "Weights": {"Passing": 1, "Warning": 1}},
            "Checks": [{"Name": "http", "Status": "passing", "Output": ""}]}


class Entry:
    """A cache entry as the watch sees it: pinned until a time, or not."""

    def __init__(self):
        self.until: float | None = None
        self.hits = 0

    def pin(self, until: float) -> None:
        self.until = until

    def unpin(self) -> None:
        self.until = None


class Cache(dict):
    def peek(self, key: bytes) -> Entry | None:
        return self.get(key)

    def discard(self, key: bytes) -> None:
        self.pop(key, None)


class Api:
    """The HTTP API's side: each GET waits for the reply the test gives it."""

    def __init__(self):
        self.asked: list[dict[str, str]] = []
        self.replies: asyncio.Queue = asyncio.Queue()

    async def get_json(self, http, point, path: str, params, timeout: float):
        self.asked.append(dict(params))
        return await self.replies.get()

    async def answer(self, body: list, index: int) -> None:
        """Give the pending GET its reply and let the watch read it."""
        await self.replies.put((body, {"X-Consul-Index": str(index)}))
        await asyncio.sleep(0.02)


def scripted_watcher(monkeypatch) -> tuple[Api, Watcher, Clock, Cache]:
    """A watcher whose HTTP API the test scripts, on a clock the test moves."""
    api, clock, cache = Api(), Clock(), Cache()
    monkeypatch.setattr(watch_module, "get_json", api.get_json)
    watcher = Watcher(SETTINGS, SimpleNamespace(cache=cache, stats=Stats()), now=clock)
    return api, watcher, clock, cache


def test_a_watch_waiting_on_its_rate_limit_holds_no_query_and_pins_nothing(monkeypatch):
    monkeypatch.setattr(watch_module, "REFILL_SECONDS", 0.3)  # the wait after the burst

    async def scenario():
        api, watcher, clock, cache = scripted_watcher(monkeypatch)
        first = watcher.ticket(WEB)  # starts the watch
        await asyncio.sleep(0.02)
        watch = watcher.watches[first.key]
        seen = {"before": watcher.describe(WEB)}
        await api.answer([INSTANCE], 5)  # the first answer, then a blocking query...
        seen["first"] = watcher.describe(WEB)
        await api.answer([INSTANCE], 6)  # ... and the second of the burst
        await api.answer([INSTANCE], 7)  # no request left to spend: it waits
        seen["waiting"] = (watch.state, watcher.watching(), watcher.describe(WEB)["state"])
        clock.advance(3)  # past the settle period
        ticket = watcher.ticket(WEB)
        cache[b"a"] = waiting_entry = Entry()
        seen["pinned while waiting"] = watcher.pin(ticket, b"a", waiting_entry, True)
        await asyncio.sleep(0.4)  # the wait ends with a query that does not block
        await api.answer([INSTANCE], 8)
        seen["again"] = (watch.state, watcher.watching(), watcher.describe(WEB))
        seen["pinned again"] = (watcher.pin(ticket, b"a", waiting_entry, True),
                                waiting_entry.until)
        await watcher.stop()
        return seen, api.asked

    seen, asked = run(scenario())
    assert seen["before"]["state"] == "starting" and seen["before"]["last_change_ago"] is None
    assert seen["first"]["state"] == "watching" and seen["first"]["last_change_ago"] == 0.0
    assert seen["waiting"] == (State.WAITING, 0, "waiting")
    assert seen["pinned while waiting"] is False
    state, watching, shown = seen["again"]
    assert (state, watching, shown["state"]) == (State.WATCHING, 1, "watching")
    assert shown["last_change_ago"] == 3.0  # since the first answer: nothing changed since
    assert seen["pinned again"] == (True, 1003.0 + SETTINGS.watch_ttl)
    assert ["index" in params for params in asked[:5]] == [False, True, True, False, True]


def test_an_acl_mismatch_leaves_the_watch_unwatchable_in_place(monkeypatch):
    """An empty HTTP view while DNS answers: the watch stops vouching and asking, and stays
    in the map so that the next query does not start it again."""

    async def scenario():
        api, watcher, clock, cache = scripted_watcher(monkeypatch)
        key = watcher.ticket(WEB).key
        await asyncio.sleep(0.02)
        watch = watcher.watches[key]
        await api.answer([], 5)  # no instances
        clock.advance(3)
        ticket = watcher.ticket(WEB)
        cache[b"nodata"], cache[b"answer"] = nodata, answer = Entry(), Entry()
        pinned_nodata = watcher.pin(ticket, b"nodata", nodata, False)  # agrees: pinned
        pinned_answer = watcher.pin(ticket, b"answer", answer, True)  # records: a mismatch
        await asyncio.sleep(0.02)
        again = watcher.ticket(WEB)
        result = (pinned_nodata, pinned_answer, nodata.until, answer.until, watch.state,
                  watcher.watches.get(key) is watch, watch.task.cancelled(), again,
                  len(api.asked), watcher.watching())
        await watcher.stop()
        return result

    (pinned_nodata, pinned_answer, nodata_until, answer_until, state, kept, cancelled,
     again, asked, watching) = run(scenario())
    assert pinned_nodata is True and pinned_answer is False
    assert nodata_until is None and answer_until is None  # unpinned at once
    assert state is State.UNWATCHABLE and kept and cancelled
    assert again is not None and asked == 2  # the same watch; no new query
    assert watching == 0
