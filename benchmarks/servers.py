"""The servers of the comparison, started on loopback, pinned to CPUs, stopped by PID.

- the upstream: unbound (one thread) answering every name under `bench.` from a redirect
  local zone (one A record, TTL 3600), so each unique name is a real upstream answer;
- the Consul agent: the Consul double (tests/consul_double) when it is there, else an unbound
  serving the same few consul names with TTL 0 (what the table then says);
- the forwarders under test: consuldns (1 or N workers), dnsmasq, unbound (one thread).

Reuses the test harness (tests/harness) for ports, readiness and stopping by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.harness import procs
from tests.harness.consuldns import start_consuldns as harness_start_consuldns
from tests.harness.procs import Proc, Server, dns_ready, launch
from tests.harness.upstream import (
    DNSMASQ,
    UNBOUND,
    require_binary,
    start_dnsmasq_forwarder,
    unbound_server_basics,
)

UNBOUND_CONTROL = "/usr/sbin/unbound-control"
DNSPERF = "dnsperf"
BENCH_ZONE = "bench."
BENCH_ADDRESS = "192.0.2.1"
BENCH_TTL = 3600
CACHE_ENTRIES = 150_000  # every forwarder's cache holds the 100k-name RSS fill with room

# The consul names of the TTL-0 scenarios (the double's default catalog, tests/harness/catalogs).
CONSUL_HOT = ("web.service.consul",)
CONSUL_FEW = ("web.service.consul", "db.service.consul", "node1.node.consul",
              "node2.node.consul")
_FALLBACK_AGENT_DATA = {
    "web.service.consul": ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"),
    "db.service.consul": ("127.0.0.9",),
    "node1.node.consul": ("127.0.0.2",),
    "node2.node.consul": ("127.0.0.3",),
}


# ---------------------------------------------------------------- CPUs and /proc


def cpu_layout() -> tuple[str, str]:
    """(CPUs for the server under test, CPUs for everything else: dnsperf, upstream, agent)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return str(cpus[0]), str(cpus[0])
    return str(cpus[0]), ",".join(str(c) for c in cpus[1:])


def all_cpus() -> str:
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def _cpu_set(text: str) -> set[int]:
    return {int(part) for part in text.split(",")}


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (consuldns workers are children of the supervisor)."""
    children = procs.live_children()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def pin(pid: int, cpus: str) -> None:
    """Set the CPU affinity of every thread of pid and of its descendants."""
    mask = _cpu_set(cpus)
    for member in process_tree(pid):
        try:
            for tid in os.listdir(f"/proc/{member}/task"):
                os.sched_setaffinity(int(tid), mask)
        except OSError:
            pass


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of pid and its descendants, in seconds: the scheduler's nanosecond count of
    every thread (/proc/PID/task/TID/schedstat), not utime+stime's 10 ms ticks."""
    total = 0
    for member in process_tree(pid):
        try:
            tids = os.listdir(f"/proc/{member}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{member}/task/{tid}/schedstat") as handle:
                    total += int(handle.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def cpu_seconds_ticks(pid: int) -> float:
    """utime + stime of pid and its descendants from /proc/PID/stat (10 ms ticks)."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICK


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all CPUs, /proc/stat) since boot."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / _TICK


def rss_kib(pid: int) -> int:
    """VmRSS of pid and its descendants, in KiB (pages they share count in each of them)."""
    return _memory_kib(pid, "status", "VmRSS:")


def pss_kib(pid: int) -> int:
    """Pss of pid and its descendants, in KiB: each shared page counts once, split between
    the processes that share it (workers share what the supervisor had before forking)."""
    return _memory_kib(pid, "smaps_rollup", "Pss:")


def _memory_kib(pid: int, source: str, field: str) -> int:
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/{source}") as handle:
                for line in handle:
                    if line.startswith(field):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


# ---------------------------------------------------------------- processes


class Pinned:
    """A harness Place that starts servers under `taskset -c CPUS` (the PID is the server's)."""

    def __init__(self, cpus: str):
        self.cpus = cpus

    def start(self, argv: Sequence[str], log_path: Path, **kwargs: Any) -> Proc:
        return procs.start(["taskset", "-c", self.cpus, *argv], log_path, **kwargs)

    def call(self, fn, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


class Running:
    """One started server of the comparison: what it is, where, and how to stop it."""

    def __init__(self, name: str, server: Any, *, kind: str, counter=None):
        self.name = name
        self.server = server
        self.kind = kind  # "upstream", "agent", "forwarder"
        self._counter = counter

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def pid(self) -> int:
        return self.server.pid

    @property
    def http_address(self) -> str | None:
        """The agent's HTTP API (HOST:PORT), when it has one (the Consul double)."""
        return getattr(self.server, "http_address", None)

    def queries_received(self) -> int | None:
        """How many queries this server has received so far, when it can tell."""
        return self._counter() if self._counter else None

    def stop(self) -> None:
        pids = process_tree(self.pid)
        try:
            self.server.stop()
        finally:
            for pid in pids[1:]:  # workers left behind by a supervisor that died first
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __repr__(self) -> str:
        return f"<{self.name} {self.address} pid={self.pid}>"


def _unbound_text(server: list[str], tail: list[str]) -> str:
    return "\n".join(["server:", *(f"    {line}" for line in server), *tail]) + "\n"


def _start_unbound(name: str, workdir: Path, server_lines, tail: list[str], *, cpus: str,
                   ready_name: str, control: bool = False) -> Server:
    require_binary(UNBOUND, "unbound")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "unbound.conf"
    if control:
        tail = [*tail, "remote-control:", "    control-enable: yes",
                f'    control-interface: "{workdir / "control.sock"}"',
                "    control-use-cert: no"]
    else:
        tail = [*tail, "remote-control:", "    control-enable: no"]

    def build(chosen: int) -> list[str]:
        conf.write_text(_unbound_text(server_lines("127.0.0.1", chosen, workdir), tail))
        return [UNBOUND, "-d", "-c", str(conf)]

    ready = dns_ready("127.0.0.1", ready_name, 10.0)
    proc, chosen = launch(name, build, workdir, ready=ready, place=Pinned(cpus))
    return Server(proc, "127.0.0.1", chosen, workdir)


def _unbound_counter(workdir: Path):
    """Total queries an unbound with a control socket received (stats_noreset)."""
    conf = workdir / "unbound.conf"

    def count() -> int | None:
        try:
            out = subprocess.run([UNBOUND_CONTROL, "-c", str(conf), "stats_noreset"],
                                 capture_output=True, text=True, timeout=5, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        for line in out.splitlines():
            if line.startswith("total.num.queries="):
                return int(line.split("=", 1)[1])
        return None

    return count


# A fence like the test harness's: nothing outside the local zones ever leaves loopback.
_FENCE = ['local-zone: "." static']
_DEAD_END = ["forward-zone:", '    name: "."', "    forward-addr: 127.0.0.1@9"]


def start_upstream(workdir: Path, cpus: str) -> Running:
    """unbound answering every name under bench. with one A record (a redirect local zone)."""

    def lines(host: str, port: int, wd: Path) -> list[str]:
        return [*unbound_server_basics(host, port, wd), *_FENCE, "so-rcvbuf: 4m", "so-sndbuf: 4m",
                f'local-zone: "{BENCH_ZONE}" redirect',
                f'local-data: "{BENCH_ZONE} {BENCH_TTL} IN A {BENCH_ADDRESS}"']

    server = _start_unbound("upstream", workdir, lines, _DEAD_END, cpus=cpus,
                            ready_name="ready.bench.", control=True)
    return Running("upstream (unbound)", server, kind="upstream",
                   counter=_unbound_counter(workdir))


def start_agent(workdir: Path, cpus: str, prefer_double: bool = True) -> Running:
    """The Consul double when available, else unbound serving the consul names with TTL 0."""
    if prefer_double:
        try:
            from tests.consul_double.process import start_double
        except ImportError:
            start_double = None
        if start_double is not None:
            from tests.harness import catalogs

            handle = start_double(catalogs.default_catalog(), profile="modern")
            pin(handle.pid, cpus)
            return Running("Consul double", _DoubleServer(handle), kind="agent",
                           counter=_double_counter(handle))

    def lines(host: str, port: int, wd: Path) -> list[str]:
        data = [f"local-data: '{name}. 0 IN A {address}'"
                for name, addresses in _FALLBACK_AGENT_DATA.items() for address in addresses]
        return [*unbound_server_basics(host, port, wd), *_FENCE, 'local-zone: "consul." static',
                *data]

    server = _start_unbound("agent", workdir, lines, _DEAD_END, cpus=cpus,
                            ready_name=CONSUL_HOT[0] + ".", control=True)
    return Running("Consul stand-in (unbound, TTL 0)", server, kind="agent",
                   counter=_unbound_counter(workdir))


class _DoubleServer:
    """Adapts the Consul double's handle to the Server interface used here."""

    def __init__(self, handle: Any):
        self.handle = handle
        self.host = handle.host
        self.port = handle.port
        self.address = handle.address
        self.pid = handle.pid
        self.http_address = handle.http_address

    def stop(self) -> None:
        self.handle.stop()


def _double_counter(handle: Any):
    def count() -> int | None:
        try:
            counters = handle.control.counters()
            total = getattr(counters, "total", None)
            return int(total if total is not None else counters["total"])
        except Exception:  # noqa: BLE001 - a double without counters: no share reported
            return None

    return count


CACHE_BUDGET = 1 << 30  # bytes: no eviction by size in the benchmarks


def start_consuldns(workdir: Path, upstream: Running, agent: Running, *, workers: int,
                    cpus: str, cache_size: int = CACHE_ENTRIES, source: Path | None = None,
                    watch: bool = False) -> Running:
    """consuldns serve; `source` runs another copy of the package (before/after comparisons).
    The watch of the agent's HTTP API is off (the harness's environment) unless `watch`:
    then it watches the double's HTTP API, with every other setting at its default."""
    # The byte budget (cache.max_bytes, 64 MiB by default) would cap the RSS fill at ~65 000
    # names in one process but not across N workers: raised so every target holds them all
    # (a tree from before the budget, --baseline-source, knows no such key).
    budget = f"max_bytes = {CACHE_BUDGET}\n" if source is None else ""
    config = f'[cache]\nsize = {cache_size}\n{budget}\n[log]\nlevel = "warning"\n'
    env = {"PYTHONPATH": str(source)} if source else None
    watching = ["--consul-http", agent.http_address] if watch else []
    server = harness_start_consuldns(workdir, consul=agent.address, upstreams=[upstream.address],
                                     config=config, place=Pinned(cpus), env=env,
                                     extra_args=["--admin", "off", "--workers", str(workers),
                                                 *watching])
    label = "consuldns" if workers == 1 else f"consuldns x{workers} workers"
    return Running(label, server, kind="forwarder")


DNSMASQ_CACHE = 10_000  # the most dnsmasq takes without warning that more is not useful


def start_dnsmasq(workdir: Path, upstream: Running, agent: Running, *, cpus: str,
                  cache_size: int = DNSMASQ_CACHE) -> Running:
    """dnsmasq as hosts run it in front of Consul (the harness's forwarder, default limits).

    Measured with 2.90: once a cache of 150 000 entries is full of unexpired names, dnsmasq
    stops forwarding (every further miss is lost); with 10 000 it keeps forwarding, evicting
    as it goes. So the load runs use 10 000, and only the RSS fill uses CACHE_ENTRIES.
    """
    server = start_dnsmasq_forwarder(None, upstream.address, agent.address, cache_size,
                                     workdir=workdir, place=Pinned(cpus))
    return Running("dnsmasq", server, kind="forwarder")


def start_unbound_forwarder(workdir: Path, upstream: Running, agent: Running, *,
                            cpus: str) -> Running:
    """unbound, one thread, forwarding everything (consul. to the agent), big caches."""

    def lines(host: str, port: int, wd: Path) -> list[str]:
        return [*unbound_server_basics(host, port, wd), "msg-cache-size: 128m",
                "rrset-cache-size: 256m"]

    tail = ["forward-zone:", '    name: "consul."', f"    forward-addr: {_at(agent)}",
            "forward-zone:", '    name: "."', f"    forward-addr: {_at(upstream)}"]
    server = _start_unbound("unbound-fwd", workdir, lines, tail, cpus=cpus,
                            ready_name="ready.bench.")
    return Running("unbound (1 thread)", server, kind="forwarder")


def _at(server: Running) -> str:
    return f"{server.host}@{server.port}"


def python_version() -> str:
    return sys.version.split()[0]


def dnsmasq_version() -> str:
    require_binary(DNSMASQ, "dnsmasq-base")
    out = subprocess.run([DNSMASQ, "--version"], capture_output=True, text=True,
                         check=False).stdout
    return out.split("\n", 1)[0].replace("Dnsmasq version ", "").split()[0]


def unbound_version() -> str:
    out = subprocess.run([UNBOUND, "-V"], capture_output=True, text=True,
                         check=False).stdout
    return out.split("\n", 1)[0].replace("Version ", "").strip()


def dnsperf_version() -> str:
    out = subprocess.run([DNSPERF, "-h"], capture_output=True, text=True, check=False)
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("Version"):
            return line.split()[1]
    return "?"
