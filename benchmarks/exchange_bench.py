"""Per-query cost of the slow path, in one process: `python -m benchmarks.exchange_bench`.

Two views, each driving the real objects `consuldns serve` runs:
- followers: one exchange and the queries that join it, as a hot TTL-0 Consul name sees
  them. A client sends a burst of identical queries (one ID each) to a UdpListener with a
  real Handler; the listener reads them in one wakeup (the first starts the exchange, the
  others join it), the group answers at once (4 A records, TTL 0) and every waiter is
  answered. Timed: the server side of the round (wakeup, exchange, replies sent). The cost
  of one more follower is the difference between bursts, per query.
- misses: queries for names never asked before, through Handler.resolve, against a real
  upstream (unbound, as benchmarks.compare starts it), `--concurrency` at a time. Timed: the
  whole round, per miss (the thread's CPU time counts its system calls too).

Wall and thread CPU time, less the cost of reading the clocks (as in benchmarks.packetio_bench),
best of --repeats runs. Under `valgrind --tool=callgrind`, run once with --rounds N and once
with --rounds 0: the difference over N x burst is the user-space instructions per query (the
kernel's work is not counted).
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from typing import ClassVar

from benchmarks.inprocess import (
    Cost,
    ask,
    best_of,
    clock_overhead,
    comma_ints,
    measure,
    new_loop,
    parser,
    running_upstream,
    runtime_for,
    timed_rounds,
)
from consuldns.dns import wire
from consuldns.serve.cache import Cache, CachePolicy
from consuldns.serve.handler import Handler, Options
from consuldns.serve.router import Route, Router
from consuldns.serve.udp import UdpListener
from consuldns.upstream.transport import Answer, Server

HOT = wire.text_to_name("web.service.consul.")
HOT_ADDRESSES = (b"\x7f\x00\x00\x02", b"\x7f\x00\x00\x03", b"\x7f\x00\x00\x04",
                 b"\x7f\x00\x00\x05")


def agent_reply(qid: int, qname: bytes) -> bytes:
    """What the agent answers for the hot name: 4 A records with TTL 0, AA set."""
    header = wire.HEADER.pack(qid, wire.QR | wire.AA | wire.RD, 1, len(HOT_ADDRESSES), 0, 0)
    records = b"".join(b"\xc0\x0c" + wire.RR_FIXED.pack(wire.A, 1, 0, 4) + address
                       for address in HOT_ADDRESSES)
    return header + qname + wire.TYPE_CLASS.pack(wire.A, 1) + records


class InstantGroup:
    """An upstream group that answers the hot name at once (on the next loop iteration)."""

    servers: ClassVar[list[Server]] = [Server("127.0.0.1", 8600)]

    async def resolve(self, question, deadline: float, late=None) -> Answer:
        await asyncio.sleep(0)
        raw = agent_reply(1, question.qname)
        return Answer(wire.parse_reply(raw), raw, self.servers[0], "udp", 0.0001)

    def signature(self) -> tuple:
        return ("instant",)


class Access:
    @staticmethod
    def allows(host: str) -> bool:
        return True


def hot_handler() -> Handler:
    agent = Route("consul.", InstantGroup(), CachePolicy(), is_agent=True, timeout=2.0)
    router = Router([agent], Route(".", InstantGroup(), CachePolicy(), timeout=4.5))
    return Handler(Cache(1000), Options(router), rng=random.Random())


async def settle(handler: Handler) -> None:
    """Until every exchange ended and what it scheduled (deferred sends) ran."""
    while len(handler.exchanges):
        await asyncio.sleep(0)
    for _ in range(3):
        await asyncio.sleep(0)


def followers_run(burst: int, rounds: int, overhead: Cost) -> Cost:
    """Mean cost per query of `rounds` rounds of one exchange with `burst` queries."""
    loop = new_loop()
    handler = hot_handler()
    queries = [wire.build_query(i, HOT, wire.A, 1) for i in range(burst)]
    listeners: dict[socket.socket, UdpListener] = {}

    async def one_round(listener: UdpListener) -> None:
        listener.on_readable()
        await settle(handler)

    def wakeup(server: socket.socket) -> None:
        listener = listeners.get(server)
        if listener is None:  # the warm-up round
            listener = listeners[server] = UdpListener(server, handler, Access(), handler.stats)
        loop.run_until_complete(one_round(listener))

    try:
        return measure(wakeup, "127.0.0.1", queries, burst, rounds, overhead)
    finally:
        loop.close()


def followers_view(args, overhead: Cost) -> list[str]:
    lines = [(f"== followers of one exchange (hot TTL-0 name, 4 A records), ns per query "
              f"(wall / CPU), best of {args.repeats} x {args.rounds} rounds")]
    costs = {}
    for burst in args.bursts:
        costs[burst] = best_of(args.repeats, followers_run, burst, args.rounds, overhead)
        lines.append(f"burst {burst:4d}: {costs[burst].wall:9.0f} / {costs[burst].cpu:7.0f}")
    low, high = min(args.bursts), max(args.bursts)
    if high > low:
        def marginal(field: str) -> float:
            return ((getattr(costs[high], field) * high - getattr(costs[low], field) * low)
                    / (high - low))

        lines.append(f"one more follower: {marginal('wall'):9.0f} / {marginal('cpu'):7.0f}")
    return lines


# ---------------------------------------------------------------- misses


def misses_run(upstream: str, concurrency: int, rounds: int, tag: str,
               overhead: Cost) -> Cost:
    """Mean cost per miss of `rounds` rounds of `concurrency` misses at once."""
    loop = new_loop()
    handler = runtime_for(upstream).handler
    names = iter(range(1 << 30))

    async def one_round() -> None:
        waiting = []
        for _ in range(concurrency):
            data = wire.build_query(1, wire.text_to_name(f"m{next(names)}.{tag}.bench."), 1, 1)
            waiting.append(ask(handler, data))
        for reply in await asyncio.gather(*waiting):
            if not reply or reply[3] & 0x0F:
                raise RuntimeError("the upstream did not answer a miss")

    def step(loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(one_round())

    try:
        cost = timed_rounds(step, loop, rounds, concurrency, overhead)
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    return cost


def misses_view(args, overhead: Cost) -> list[str]:
    with running_upstream("consuldns-exchange-") as upstream:
        lines = [(f"== misses against {upstream.name}, ns per miss (wall / CPU), best of "
                  f"{args.repeats} x {args.rounds} rounds")]
        for concurrency in args.concurrency:
            tags = iter(range(args.repeats))  # names never asked before, in every run
            cost = best_of(args.repeats, lambda concurrency=concurrency, tags=tags: misses_run(
                upstream.address, concurrency, args.rounds, f"c{concurrency}r{next(tags)}",
                overhead))
            lines.append(f"{concurrency:4d} at a time: {cost.wall:9.0f} / {cost.cpu:7.0f}")
    return lines


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    command = parser("benchmarks.exchange_bench", __doc__, ("followers", "misses"))
    command.add_argument("--bursts", default="1,64", type=comma_ints,
                         help="followers: queries per exchange")
    command.add_argument("--concurrency", default="1,100", type=comma_ints,
                         help="misses: at a time, comma list")
    command.add_argument("--rounds", type=int, default=200)
    command.add_argument("--repeats", type=int, default=5)
    args = command.parse_args(argv)
    overhead = clock_overhead()
    lines = []
    if args.view in ("followers", "both"):
        lines += followers_view(args, overhead)
    if args.view in ("misses", "both"):
        lines += misses_view(args, overhead)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
