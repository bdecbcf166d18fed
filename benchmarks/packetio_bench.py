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

import argparse
import asyncio
import dataclasses
import importlib.util
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from consuldns import packetio
from consuldns.dns import wire

Wakeup = Callable[[socket.socket], None]
QUERY = wire.build_query(4242, wire.text_to_name("www.example.com."), 1, 1, edns_size=1232)


@dataclasses.dataclass
class Cost:
    """Nanoseconds per datagram."""

    wall: float
    cpu: float


# ---------------------------------------------------------------- sockets and timing


def socket_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """(server, client) UDP sockets on `host`, the server non-blocking as the listener's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server, client = socket.socket(family, socket.SOCK_DGRAM), socket.socket(family,
                                                                             socket.SOCK_DGRAM)
    for sock in (server, client):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((host, 0))
    server.setblocking(False)
    client.settimeout(2.0)
    return server, client


def clock_overhead(samples: int = 2000) -> Cost:
    """What reading both clocks around a wakeup costs by itself."""
    best = Cost(float("inf"), float("inf"))
    for _ in range(samples):
        started, cpu = time.perf_counter_ns(), time.thread_time_ns()
        cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - started
        best = Cost(min(best.wall, wall), min(best.cpu, cpu))
    return best


def measure(wakeup: Wakeup, host: str, queries: list[bytes], burst: int, rounds: int,
            overhead: Cost) -> Cost:
    """Mean cost per datagram of `rounds` wakeups, each handling `burst` datagrams."""
    server, client = socket_pair(host)
    target = server.getsockname()
    wall = cpu = 0
    try:
        for round_number in range(rounds + 1):
            for index in range(burst):
                client.sendto(queries[(round_number * burst + index) % len(queries)], target)
            started, cpu_started = time.perf_counter_ns(), time.thread_time_ns()
            wakeup(server)
            cpu_spent = time.thread_time_ns() - cpu_started
            wall_spent = time.perf_counter_ns() - started
            for _ in range(burst):
                client.recv(4096)
            if round_number:  # the first round warms up
                wall += wall_spent - overhead.wall
                cpu += cpu_spent - overhead.cpu
    finally:
        server.close()
        client.close()
    return Cost(wall / (rounds * burst), cpu / (rounds * burst))


def best_of(repeats: int, run: Callable[..., Cost], *args) -> Cost:
    costs = [run(*args) for _ in range(repeats)]
    return Cost(min(c.wall for c in costs), min(c.cpu for c in costs))


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


def runtime_for(upstream_address: str):
    """A runtime as `consuldns serve` builds it, asking upstream_address for every name."""
    from consuldns.ops import app
    from consuldns.ops.settings import Settings

    settings = Settings()
    settings = dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, listen=("127.0.0.1:1",)),
        upstream=dataclasses.replace(settings.upstream, servers=(upstream_address,)),
        consul=dataclasses.replace(settings.consul, address=upstream_address))
    return app.Runtime(settings)


def warm_runtime(upstream_address: str, queries: list[bytes]):
    """A runtime as `consuldns serve` builds it, its cache holding every query's answer."""
    runtime = runtime_for(upstream_address)

    async def fill() -> None:
        for data in queries:
            result = runtime.handler.answer_now(data, False)
            if result.__class__ is not bytes:
                answered = asyncio.get_running_loop().create_future()
                runtime.handler.resolve(data, result, False, None, answered.set_result)
                await answered

    asyncio.run(fill())
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
    from benchmarks.servers import cpu_layout, start_upstream

    workdir = Path(tempfile.mkdtemp(prefix="consuldns-packetio-"))
    _, rest = cpu_layout()
    upstream = start_upstream(workdir / "upstream", rest)
    try:
        queries = hit_queries(args.names)
        runtime = warm_runtime(upstream.address, queries)
        wakeups = hit_wakeups(runtime, args.baseline_listener)
        return table("hits: UdpListener.on_readable with a real Handler, ns per query "
                     "(wall / CPU)", wakeups, queries, args, overhead)
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.packetio_bench",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--view", choices=("io", "hits", "both"), default="both")
    parser.add_argument("--bursts", default="1,8,64", help="datagrams per wakeup, comma list")
    parser.add_argument("--hosts", default="127.0.0.1", help="comma list, e.g. 127.0.0.1,::1")
    parser.add_argument("--rounds", type=int, default=1000, help="wakeups per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--names", type=int, default=1000, help="hits: names in the cache")
    parser.add_argument("--baseline-listener", type=Path, default=None,
                        help="hits: also time this listener.py (e.g. the main checkout's)")
    parser.add_argument("--only", default="",
                        help="comma list of columns to run (inline, baseline, python, accel)")
    args = parser.parse_args(argv)
    args.only = {name for name in args.only.split(",") if name}
    args.bursts = [int(b) for b in args.bursts.split(",")]
    args.hosts = [h.strip() for h in args.hosts.split(",")]
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
