"""Where a cache hit and a miss spend their time: `python -m benchmarks.profile_paths`.

Two views:
- `sampled`: the real server (`consuldns serve`, one worker, pinned to a CPU) under dnsperf
  load, sampled with py-spy (`pip install py-spy`) or, without it, run under cProfile; prints
  the functions by own time and by inclusive time, per path (hits, misses, consul TTL 0);
- `inprocess`: the handler driven directly, without sockets on the client side: microseconds
  per hit (answer_now) and per miss (resolve against the real upstream), next to the cost of
  the socket calls a hit and a miss make, so the split between Python and the kernel shows.

Loopback only; each load run lasts a few seconds.
"""

from __future__ import annotations

import collections
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import dnsperf
from benchmarks.inprocess import ask, comma_list, parser, run, running_upstream, runtime_for
from benchmarks.servers import CONSUL_HOT, cpu_layout, start_agent, start_consuldns, start_upstream

RESULTS = Path(__file__).resolve().parent / "results"
PATHS = ("hits", "misses", "consul_hot")
# py-spy on PATH, or next to this Python (a venv that is not activated)
PY_SPY = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))


# ---------------------------------------------------------------- sampled (py-spy)


def _collapse(raw: Path) -> tuple[int, collections.Counter, collections.Counter]:
    """Own and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return total, own, inclusive


def _lines(raw: Path) -> collections.Counter:
    counter: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counter[stack.split(";")[-1]] += int(count)
    return counter


def _format(title: str, total: int, own, inclusive, lines, top: int) -> str:
    out = [f"== {title}: {total} samples", "-- own time (function)"]
    out += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    out += ["-- own time (line)"]
    out += [f"{100 * n / total:5.1f}%  {name}" for name, n in lines.most_common(top)]
    out += ["-- inclusive (consuldns frames)"]
    out += [f"{100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common()
            if "consuldns/" in name and "cli.py" not in name and "__main__" not in name][:top]
    return "\n".join(out)


def _load(path: str, server, workdir: Path, cpus: str, seconds: float):
    if path == "hits":
        names = dnsperf.write_queries(workdir / "hits.txt",
                                      (f"h{i}.hits.bench." for i in range(1000)))
        dnsperf.run(server.port, names, duration=30, max_runs=1, cpus=cpus)
        return lambda: dnsperf.run(server.port, names, duration=seconds, cpus=cpus)
    if path == "misses":
        names = dnsperf.write_queries(workdir / "miss.txt",
                                      (f"p{i}.miss.bench." for i in range(int(80_000 * seconds))))
        return lambda: dnsperf.run(server.port, names, duration=seconds, cpus=cpus, max_runs=1)
    names = dnsperf.write_queries(workdir / "hot.txt", CONSUL_HOT)
    return lambda: dnsperf.run(server.port, names, duration=seconds, cpus=cpus)


def sampled(args, workdir: Path) -> str:
    server_cpus, rest = cpu_layout()
    upstream = start_upstream(workdir / "upstream", rest)
    agent = start_agent(workdir / "agent", rest, prefer_double=not args.no_double)
    reports = []
    try:
        if args.tool == "py-spy":
            server = start_consuldns(workdir / "consuldns", upstream, agent, workers=1,
                                     cpus=server_cpus)
            try:
                for path in args.paths:
                    reports.append(_pyspy(path, server, workdir, rest, args))
            finally:
                server.stop()
        else:
            for path in args.paths:
                reports.append(_cprofile(path, upstream, agent, workdir, server_cpus, rest, args))
    finally:
        agent.stop()
        upstream.stop()
    return "\n\n".join(reports)


def _pyspy(path: str, server, workdir: Path, cpus: str, args) -> str:
    raw = workdir / f"{path}.raw"
    run = _load(path, server, workdir, cpus, args.seconds + 1)
    spy = subprocess.Popen([PY_SPY, "record", "--pid", str(server.pid), "--duration",
                            f"{int(args.seconds)}", "--rate", "250", "--format", "raw",
                            "--nonblocking", "-o", str(raw)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    result = run()
    spy.wait(timeout=args.seconds + 30)
    if not raw.exists():
        return f"== {path}: py-spy wrote nothing ({spy.stderr.read().decode()[-300:]})"
    total, own, inclusive = _collapse(raw)
    title = f"{path} (py-spy, {result.qps:.0f} qps while sampled)"
    return _format(title, total, own, inclusive, _lines(raw), args.top)


def _cprofile(path: str, upstream, agent, workdir: Path, server_cpus: str, cpus: str,
              args) -> str:
    """Run `consuldns serve` under cProfile for one path, stop it with SIGTERM, read stats."""
    from tests.harness.ports import free_port
    from tests.harness.procs import start, wait_for_dns

    port = free_port()
    stats_path = workdir / f"{path}.prof"
    argv = ["taskset", "-c", server_cpus, sys.executable, "-m", "cProfile", "-o",
            str(stats_path), "-m", "consuldns", "serve", "--listen", f"127.0.0.1:{port}",
            "--upstream", upstream.address, "--consul", agent.address, "--admin", "off",
            "--log-level", "warning"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = start(argv, workdir / f"cprofile-{path}.log", name="consuldns-cprofile", env=env)
    try:
        wait_for_dns("127.0.0.1", port, "ready.bench.", proc=proc)
        holder = type("S", (), {"port": port})
        result = _load(path, holder, workdir, cpus, args.seconds)()
    finally:
        proc.stop(signal.SIGTERM, timeout=10)
    stats = pstats.Stats(str(stats_path))
    lines = [(f"== {path} (cProfile, {result.qps:.0f} qps while profiled; cProfile itself "
              f"slows Python code several times)")]
    total = sum(v[2] for v in stats.stats.values())  # own time
    ranked = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)
    for (filename, line, name), (cc, nc, tt, ct, _) in ranked[:args.top]:
        lines.append(f"{100 * tt / total:5.1f}%  {name} ({Path(filename).name}:{line}) "
                     f"calls={nc}")
    return "\n".join(lines)


# ---------------------------------------------------------------- in process


def inprocess(args) -> str:
    """us per hit and per miss inside the handler, and per socket operation around it."""
    from consuldns.dns import wire

    with running_upstream("consuldns-profile-") as upstream:
        handler = runtime_for(upstream.address).handler
        count = args.names
        queries = [wire.build_query(i & 0xFFFF, wire.text_to_name(f"i{i}.inproc.bench."), 1, 1)
                   for i in range(count)]
        out = [f"== in-process costs ({count} names)"]

        async def misses() -> tuple[float, float]:
            started, cpu = time.perf_counter(), time.process_time()
            for data in queries:
                await ask(handler, data)
            return time.perf_counter() - started, time.process_time() - cpu

        elapsed, cpu = run(misses())
        out.append(f"miss, one at a time (handler.resolve, incl. upstream socket): "
                   f"{1e6 * cpu / count:7.2f} us CPU, {1e6 * elapsed / count:7.2f} us wall")
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for data in queries:
                handler.answer_now(data, False)
            best = min(best, time.process_time() - started)
        out.append(f"hit (handler.answer_now, bytes in -> bytes out, best of 5):   "
                   f"{1e6 * best / count:7.2f} us CPU")
        out += _socket_costs(upstream, queries[0])
        return "\n".join(out)


def _socket_costs(upstream, message: bytes) -> list[str]:
    """The system calls of a hit (recvfrom + sendto) and of a fresh upstream socket."""
    rounds = 20000
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    address = server.getsockname()
    started = time.perf_counter()
    for _ in range(rounds):
        client.sendto(message, address)
        server.recvfrom(4096)
    pair = time.perf_counter() - started
    server.close()
    client.close()
    started = time.perf_counter()
    target = (upstream.host, upstream.port)
    for _ in range(rounds // 4):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(target)
        sock.close()
    fresh = time.perf_counter() - started
    return [(f"sendto + recvfrom of one datagram on loopback:            "
             f"{1e6 * pair / rounds:7.2f} us"),
            (f"socket() + connect() + close() of a fresh upstream socket: "
             f"{1e6 * fresh / (rounds // 4):7.2f} us")]


def main(argv: list[str] | None = None) -> int:
    command = parser("benchmarks.profile_paths", __doc__, ("sampled", "inprocess"))
    command.add_argument("--tool", choices=("py-spy", "cprofile"),
                         default="py-spy" if PY_SPY else "cprofile")
    command.add_argument("--paths", default=",".join(PATHS), type=comma_list,
                         help="comma list of " + ",".join(PATHS))
    command.add_argument("--seconds", type=float, default=4.0, help="load per path")
    command.add_argument("--top", type=int, default=20)
    command.add_argument("--names", type=int, default=5000, help="in-process: names")
    command.add_argument("--no-double", action="store_true")
    args = command.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="consuldns-profile-"))
    try:
        parts = []
        if args.view in ("inprocess", "both"):
            parts.append(inprocess(args))
        if args.view in ("sampled", "both"):
            parts.append(sampled(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = "\n\n".join(parts)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"profile-{time.strftime('%Y%m%d-%H%M%S')}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
