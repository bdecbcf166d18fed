"""The coalescer: one exchange per key, every waiter gets its outcome, in order."""

from __future__ import annotations

import asyncio

from consuldns.serve.inflight import ABSENT, FULL, JOINED, MAX_WAITERS, Exchanges
from tests.unit.fakes import run


def test_waiters_of_one_key_share_one_fetch_and_get_its_outcome_in_order():
    async def scenario():
        exchanges, gate, got = Exchanges(), asyncio.Event(), []
        fetches = []

        async def fetch():
            fetches.append(1)
            await gate.wait()
            return "template"

        assert exchanges.join(b"k", got.append) is ABSENT
        exchanges.start(b"k", fetch(), lambda outcome: got.append(("first", outcome)))
        assert exchanges.join(b"k", lambda outcome: got.append(("second", outcome))) is JOINED
        assert len(exchanges) == 1 and exchanges.waiting == 2
        gate.set()
        await asyncio.sleep(0.01)
        return exchanges, got, fetches

    exchanges, got, fetches = run(scenario())
    assert got == [("first", "template"), ("second", "template")]
    assert fetches == [1] and len(exchanges) == 0 and exchanges.waiting == 0
    assert b"k" not in exchanges  # a later query starts a new exchange


def test_an_exception_reaches_every_waiter_and_a_failing_waiter_spares_the_others():
    async def scenario():
        exchanges, got = Exchanges(), []

        async def fetch():
            raise ValueError("upstream")

        def broken(outcome):
            raise RuntimeError("bug in a waiter")

        exchanges.start(b"k", fetch(), broken)
        exchanges.join(b"k", got.append)
        await asyncio.sleep(0.01)
        return got

    got = run(scenario())
    assert len(got) == 1 and isinstance(got[0], ValueError)


def test_drain_waits_for_exchanges_then_cancels_the_late_ones():
    async def scenario():
        exchanges, got = Exchanges(), []

        async def quick():
            await asyncio.sleep(0.01)
            return "quick"

        async def forever():
            await asyncio.Event().wait()

        exchanges.start(b"a", quick(), got.append)
        exchanges.start(b"b", forever(), got.append)
        await exchanges.drain(0.2)
        return got

    got = run(scenario())
    assert got[0] == "quick" and isinstance(got[1], asyncio.CancelledError)


def test_one_exchange_takes_at_most_max_waiters_and_owners_are_counted_while_it_runs():
    async def scenario():
        exchanges, gate = Exchanges(), asyncio.Event()

        async def fetch():
            await gate.wait()
            return "template"

        exchanges.start(b"k", fetch(), lambda outcome: None, owner="192.0.2")
        exchanges.start(b"j", fetch(), lambda outcome: None, owner="192.0.2")
        joins = [exchanges.join(b"k", lambda outcome: None) for _ in range(MAX_WAITERS)]
        held = exchanges.held_by("192.0.2"), exchanges.held_by("198.51.100")
        gate.set()
        await asyncio.sleep(0.01)
        return joins, held, exchanges.held_by("192.0.2")

    joins, held, after = run(scenario())
    assert joins.count(JOINED) == MAX_WAITERS - 1 and joins[-1] is FULL
    assert held == (2, 0) and after == 0
