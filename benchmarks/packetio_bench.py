"""Per-datagram cost of the UDP packet loop: `python -m benchmarks.packetio_bench`.

Two views, in one process on loopback, a client socket and the server's socket driven in
turn (the client sends a burst, the server handles it in one wakeup, the client reads the
replies):
- io: the packet I/O alone, echoing each datagram: the recvfrom/sendto loop the listener
  used before packetio ("inline"), the pure-Python fallback and the accelerator;
- hits: the whole cache-hit path, Listeners._on_udp_readable with a real Handler whose cache
  holds every name (filled from unbound, as benchmarks.profile_paths does), per packet I/O,
  and the listener of another checkout with --baseline-listener PATH/consuldns/listener.py.

Only the server's wakeup is timed, as wall time and as the thread's CPU time (the cost of
reading the clocks is subtracted); each figure is the best of --repeats runs. Burst sizes
cover a lightly loaded server (1 datagram per wakeup) to a saturated one (64). Under
`valgrind --tool=callgrind` run one column (--only) with --repeats 1, once with --rounds N and
once with --rounds 0: the difference over N x burst is the user-space instructions per
datagram (the kernel's work is not counted).
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

from benchmarks.inprocess import (
    Cost,
    Wakeup,
    ask,
    best_of,
    clock_overhead,
    comma_ints,
    comma_list,
    measure,
    parser,
    run,
    running_upstream,
    runtime_for,
)
from consuldns import packetio
from consuldns.dns import wire

QUERY = wire.build_query(4242, wire.text_to_name("www.example.com."), 1, 1, edns_size=1232)


# ---------------------------------------------------------------- io view


def inline_wakeup(server: socket.socket) -> None:
    """The loop of the listener before packetio: recvfrom and sendto per datagram."""
    receive, send = server.recvfrom, server.sendto
    for _ in range(packetio.MAX_BATCH):
        try:
            data, client = receive(packetio.MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return
        send(data, client)


def batch_wakeup(implementation: packetio.Implementation) -> Wakeup:
    receive, send = implementation.recv_batch, implementation.send_batch

    def wakeup(server: socket.socket) -> None:
        send(server, receive(server, packetio.MAX_BATCH))  # (data, address) pairs echo

    return wakeup


def implementations() -> dict[str, packetio.Implementation]:
    found = {"python": packetio.PURE_PYTHON}
    accelerated = packetio.accelerator()
    if accelerated is not None:
        found["accel"] = accelerated
    return found


def io_view(args, overhead: Cost) -> list[str]:
    wakeups = {"inline": inline_wakeup}
    wakeups.update({name: batch_wakeup(impl) for name, impl in implementations().items()})
    return table("io: receive + send, ns per datagram (wall / CPU)", wakeups, [QUERY], args,
                 overhead)


def table(title: str, wakeups: dict[str, Wakeup], queries: list[bytes], args,
          overhead: Cost) -> list[str]:
    if args.only:
        wakeups = {name: wakeup for name, wakeup in wakeups.items() if name in args.only}
    lines = [f"== {title}, best of {args.repeats} x {args.rounds} wakeups",
             "burst " + "".join(f"{name:>20}" for name in wakeups)]
    for host in args.hosts:
        for burst in args.bursts:
            cells = []
            for wakeup in wakeups.values():
                cost = best_of(args.repeats, measure, wakeup, host, queries, burst,
                               args.rounds, overhead)
                cells.append(f"{cost.wall:9.0f} /{cost.cpu:7.0f}")
            lines.append(f"{burst:5d} " + "".join(f"{cell:>20}" for cell in cells)
                         + f"   {host}")
    return lines


# ---------------------------------------------------------------- hits view


def hit_queries(count: int) -> list[bytes]:
    return [wire.build_query(i & 0xFFFF, wire.text_to_name(f"h{i}.hits.bench."), 1, 1,
                             edns_size=1232) for i in range(count)]


def warm_runtime(upstream_address: str, queries: list[bytes]):
    """A runtime as `consuldns serve` builds it, its cache holding every query's answer."""
    runtime = runtime_for(upstream_address)

    async def fill() -> None:
        for data in queries:
            await ask(runtime.handler, data)

    run(fill())
    return runtime


def load_listener_module(path: Path):
    """The listener module of another checkout, run against this checkout's handler."""
    spec = importlib.util.spec_from_file_location("baseline_listener", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hit_wakeups(runtime, baseline: Path | None) -> dict[str, Wakeup]:
    """The UDP listener's wakeup per packet I/O implementation (and, with baseline, the
    listener.py of a checkout from before the package layout: Listeners._on_udp_readable)."""
    from consuldns.serve.udp import UdpListener

    wakeups: dict[str, Wakeup] = {}
    if baseline is not None:
        old = load_listener_module(baseline).Listeners(
            runtime.handler, runtime.listeners.access, runtime.listeners.tcp.limits,
            runtime.stats)
        wakeups["baseline"] = old._on_udp_readable
    for name, implementation in implementations().items():
        listeners: dict = {}

        def wakeup(sock, implementation=implementation, listeners=listeners) -> None:
            listener = listeners.get(sock)
            if listener is None:
                listener = listeners[sock] = UdpListener(
                    sock, runtime.handler, runtime.listeners.access, runtime.stats,
                    implementation)
            listener.on_readable()

        wakeups[name] = wakeup
    return wakeups


def hits_view(args, overhead: Cost) -> list[str]:
    with running_upstream("consuldns-packetio-") as upstream:
        queries = hit_queries(args.names)
        runtime = warm_runtime(upstream.address, queries)
        wakeups = hit_wakeups(runtime, args.baseline_listener)
        return table("hits: UdpListener.on_readable with a real Handler, ns per query "
                     "(wall / CPU)", wakeups, queries, args, overhead)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    command = parser("benchmarks.packetio_bench", __doc__, ("io", "hits"))
    command.add_argument("--bursts", default="1,8,64", type=comma_ints,
                         help="datagrams per wakeup, comma list")
    command.add_argument("--hosts", default="127.0.0.1", type=comma_list,
                         help="comma list, e.g. 127.0.0.1,::1")
    command.add_argument("--rounds", type=int, default=1000, help="wakeups per run")
    command.add_argument("--repeats", type=int, default=5)
    command.add_argument("--names", type=int, default=1000, help="hits: names in the cache")
    command.add_argument("--baseline-listener", type=Path, default=None,
                         help="hits: also time this listener.py (e.g. the main checkout's)")
    command.add_argument("--only", default="", type=comma_list,
                         help="comma list of columns to run (inline, baseline, python, accel)")
    args = command.parse_args(argv)
    overhead = clock_overhead()
    lines = [f"clock overhead subtracted: {overhead.wall} ns wall, {overhead.cpu} ns CPU"]
    if args.view in ("io", "both"):
        lines += io_view(args, overhead)
    if args.view in ("hits", "both"):
        lines += hits_view(args, overhead)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
