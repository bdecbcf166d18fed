"""What the in-process benchmarks share (exchange_bench, packetio_bench, profile_paths).

- timing: `Cost`, `clock_overhead`, `timed_rounds` (the loop every timed figure comes from: a
  warm-up round, then wall and thread CPU time per round less the cost of reading the
  clocks), `measure` (timed_rounds around one wakeup of a UDP server socket fed by a client
  socket, `socket_pair`) and `best_of`;
- the real objects: `runtime_for` (a runtime as `consuldns serve` builds it), `ask` (a query
  through the handler as the UDP listener drives it: answer_now, then resolve on a miss),
  `new_loop` and `run` (uvloop when installed, as `consuldns serve` runs) and
  `running_upstream` (unbound, as benchmarks.compare starts it, in a temporary directory);
- the command line: `parser` (the module docstring as help, --view) and the comma lists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

Subject = TypeVar("Subject")
Wakeup = Callable[[socket.socket], None]


@dataclasses.dataclass
class Cost:
    """Nanoseconds per datagram (or query, or miss)."""

    wall: float
    cpu: float


# ---------------------------------------------------------------- timing


def clock_overhead(samples: int = 2000) -> Cost:
    """What reading both clocks around a wakeup costs by itself."""
    best = Cost(float("inf"), float("inf"))
    for _ in range(samples):
        started, cpu = time.perf_counter_ns(), time.thread_time_ns()
        cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - started
        best = Cost(min(best.wall, wall), min(best.cpu, cpu))
    return best


def timed_rounds(step: Callable[[Subject], object], subject: Subject, rounds: int,
                 per_round: int, overhead: Cost,
                 before: Callable[[int], object] | None = None,
                 after: Callable[[int], object] | None = None) -> Cost:
    """Mean cost per item of `rounds` calls of step(subject), each handling `per_round` items,
    after one that warms up. Only step(subject) is timed, less `overhead` (clock_overhead());
    before(round_number) and after(round_number) run around it, untimed."""
    wall = cpu = 0
    for round_number in range(rounds + 1):
        if before is not None:
            before(round_number)
        started, cpu_started = time.perf_counter_ns(), time.thread_time_ns()
        step(subject)
        cpu_spent = time.thread_time_ns() - cpu_started
        wall_spent = time.perf_counter_ns() - started
        if after is not None:
            after(round_number)
        if round_number:  # the first round warms up
            wall += wall_spent - overhead.wall
            cpu += cpu_spent - overhead.cpu
    count = max(rounds * per_round, 1)  # --rounds 0 (the callgrind baseline) reports 0
    return Cost(wall / count, cpu / count)


def socket_pair(host: str = "127.0.0.1") -> tuple[socket.socket, socket.socket]:
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


def measure(wakeup: Wakeup, host: str, queries: list[bytes], burst: int, rounds: int,
            overhead: Cost) -> Cost:
    """Mean cost per datagram of `rounds` wakeups, each handling `burst` datagrams: the client
    sends a burst (untimed), wakeup(server) handles it (timed), the client reads the replies
    (untimed)."""
    server, client = socket_pair(host)
    target = server.getsockname()

    def send(round_number: int) -> None:
        for index in range(burst):
            client.sendto(queries[(round_number * burst + index) % len(queries)], target)

    def receive(round_number: int) -> None:
        for _ in range(burst):
            client.recv(4096)

    try:
        return timed_rounds(wakeup, server, rounds, burst, overhead, send, receive)
    finally:
        server.close()
        client.close()


def best_of(repeats: int, run: Callable[..., Cost], *args) -> Cost:
    costs = [run(*args) for _ in range(repeats)]
    return Cost(min(c.wall for c in costs), min(c.cpu for c in costs))


# ---------------------------------------------------------------- the real objects


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed, as `consuldns serve` runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(coroutine: Coroutine[Any, Any, Subject]) -> Subject:
    """asyncio.run on new_loop() (what uvloop.run does)."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(coroutine)


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


def ask(handler, data: bytes) -> asyncio.Future:
    """The reply to the UDP query `data`, as the listener gets it: handler.answer_now, and on a
    miss handler.resolve. In a running loop; the future is done at once on a hit."""
    result = handler.answer_now(data, False)
    answered = asyncio.get_running_loop().create_future()
    if result.__class__ is bytes:
        answered.set_result(result)
    else:
        handler.resolve(data, result, False, None, answered.set_result)
    return answered


@contextlib.contextmanager
def running_upstream(prefix: str) -> Iterator[Any]:
    """unbound, as benchmarks.compare starts it (on the CPUs the server would leave free), in
    a temporary directory named `prefix`..., stopped and removed afterwards."""
    from benchmarks.servers import cpu_layout, start_upstream  # imports tests.harness

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        _, rest = cpu_layout()
        upstream = start_upstream(workdir / "upstream", rest)
        try:
            yield upstream
        finally:
            upstream.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- command line


def parser(module: str, doc: str | None, views: tuple[str, ...]) -> argparse.ArgumentParser:
    """`python -m module`'s parser: the module docstring as help, --view VIEW|both."""
    made = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    made.add_argument("--view", choices=(*views, "both"), default="both")
    return made


def comma_list(text: str) -> list[str]:
    """"a, b,,c" -> ["a", "b", "c"] (an argparse type; it converts string defaults too)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def comma_ints(text: str) -> list[int]:
    return [int(item) for item in comma_list(text)]
