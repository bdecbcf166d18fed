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

Wall and thread CPU time, best of --repeats runs. Under `valgrind --tool=callgrind`, run once
with --rounds N and once with --rounds 0: the difference over N x burst is the user-space
instructions per query (the kernel's work is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.packetio_bench import Cost, best_of, runtime_for
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

    servers = [Server("127.0.0.1", 8600)]

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


def socket_pair() -> tuple[socket.socket, socket.socket]:
    server, client = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for sock in (server, client):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client.settimeout(2.0)
    return server, client


async def settle(handler: Handler) -> None:
    """Until every exchange ended and what it scheduled (deferred sends) ran."""
    while len(handler.exchanges):
        await asyncio.sleep(0)
    for _ in range(3):
        await asyncio.sleep(0)


def followers_run(burst: int, rounds: int) -> Cost:
    """Mean cost per query of `rounds` rounds of one exchange with `burst` queries."""
    loop = new_loop()
    handler = hot_handler()
    server, client = socket_pair()
    listener = UdpListener(server, handler, Access(), handler.stats)
    queries = [wire.build_query(i, HOT, wire.A, 1) for i in range(burst)]
    target = server.getsockname()

    async def one_round() -> None:
        listener.on_readable()
        await settle(handler)

    wall = cpu = 0
    try:
        for number in range(rounds + 1):
            for data in queries:
                client.sendto(data, target)
            started, cpu_started = time.perf_counter_ns(), time.thread_time_ns()
            loop.run_until_complete(one_round())
            cpu_spent, wall_spent = (time.thread_time_ns() - cpu_started,
                                     time.perf_counter_ns() - started)
            for _ in range(burst):
                client.recv(4096)
            if number:  # the first round warms up
                wall, cpu = wall + wall_spent, cpu + cpu_spent
    finally:
        server.close()
        client.close()
        loop.close()
    count = max(rounds * burst, 1)
    return Cost(wall / count, cpu / count)


def followers_view(args) -> list[str]:
    lines = [f"== followers of one exchange (hot TTL-0 name, 4 A records), ns per query "
             f"(wall / CPU), best of {args.repeats} x {args.rounds} rounds"]
    costs = {}
    for burst in args.bursts:
        costs[burst] = best_of(args.repeats, followers_run, burst, args.rounds)
        lines.append(f"burst {burst:4d}: {costs[burst].wall:9.0f} / {costs[burst].cpu:7.0f}")
    low, high = min(args.bursts), max(args.bursts)
    if high > low:
        def marginal(field: str) -> float:
            return ((getattr(costs[high], field) * high - getattr(costs[low], field) * low)
                    / (high - low))

        lines.append(f"one more follower: {marginal('wall'):9.0f} / {marginal('cpu'):7.0f}")
    return lines


# ---------------------------------------------------------------- misses


def misses_run(upstream: str, concurrency: int, rounds: int, tag: str) -> Cost:
    """Mean cost per miss of `rounds` rounds of `concurrency` misses at once."""
    loop = new_loop()
    handler = runtime_for(upstream).handler
    names = iter(range(1 << 30))

    async def one_round() -> None:
        waiting = []
        for _ in range(concurrency):
            data = wire.build_query(1, wire.text_to_name(f"m{next(names)}.{tag}.bench."), 1, 1)
            query = handler.answer_now(data, False)
            answered = loop.create_future()
            handler.resolve(data, query, False, None, answered.set_result)
            waiting.append(answered)
        for reply in await asyncio.gather(*waiting):
            if not reply or reply[3] & 0x0F:
                raise RuntimeError("the upstream did not answer a miss")

    wall = cpu = 0
    try:
        for number in range(rounds + 1):
            started, cpu_started = time.perf_counter_ns(), time.thread_time_ns()
            loop.run_until_complete(one_round())
            cpu_spent, wall_spent = (time.thread_time_ns() - cpu_started,
                                     time.perf_counter_ns() - started)
            if number:
                wall, cpu = wall + wall_spent, cpu + cpu_spent
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    count = max(rounds * concurrency, 1)
    return Cost(wall / count, cpu / count)


def misses_view(args) -> list[str]:
    from benchmarks.servers import cpu_layout, start_upstream

    workdir = Path(tempfile.mkdtemp(prefix="consuldns-exchange-"))
    _, rest = cpu_layout()
    upstream = start_upstream(workdir / "upstream", rest)
    lines = [f"== misses against {upstream.name}, ns per miss (wall / CPU), best of "
             f"{args.repeats} x {args.rounds} rounds"]
    try:
        for concurrency in args.concurrency:
            tags = iter(range(args.repeats))
            cost = best_of(args.repeats, lambda: misses_run(
                upstream.address, concurrency, args.rounds, f"c{concurrency}r{next(tags)}"))
            lines.append(f"{concurrency:4d} at a time: {cost.wall:9.0f} / {cost.cpu:7.0f}")
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return lines


# ---------------------------------------------------------------- main


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed, as `consuldns serve` runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exchange_bench",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--view", choices=("followers", "misses", "both"), default="both")
    parser.add_argument("--bursts", default="1,64", help="followers: queries per exchange")
    parser.add_argument("--concurrency", default="1,100", help="misses: at a time, comma list")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    args.bursts = [int(b) for b in args.bursts.split(",")]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    lines = []
    if args.view in ("followers", "both"):
        lines += followers_view(args)
    if args.view in ("misses", "both"):
        lines += misses_view(args)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
