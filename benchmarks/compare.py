"""consuldns vs dnsmasq vs unbound, side by side with dnsperf: `python -m benchmarks.compare`.

Installs nothing. Needs dnsperf, dnsmasq and unbound (apt-get install dnsperf dnsmasq-base
unbound). Everything listens on 127.0.0.1; every load run is bounded in time (and misses in
count). See README.md "Performance" for what each scenario measures and how to read the table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import dnsperf, report
from benchmarks.servers import (
    CACHE_ENTRIES,
    CONSUL_FEW,
    CONSUL_HOT,
    DNSMASQ_CACHE,
    DNSPERF,
    Running,
    all_cpus,
    cpu_layout,
    cpu_seconds,
    cpu_seconds_ticks,
    dnsmasq_version,
    dnsperf_version,
    machine_busy,
    pin,
    pss_kib,
    python_version,
    rss_kib,
    start_agent,
    start_consuldns,
    start_dnsmasq,
    start_unbound_forwarder,
    start_upstream,
    unbound_version,
)
from tests.harness.upstream import DNSMASQ, UNBOUND

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("hits", "misses", "consul_hot", "consul_few", "consul_watch", "latency_hits",
             "latency_misses")
WATCHED_TARGETS = ("consuldns", "consuldns-n")  # consul_watch runs them with --consul-http
PIN_TIMEOUT = 15.0  # seconds a watching consuldns may take to keep its answers
HIT_NAMES = 1000
LATENCY_QPS = 2000
RSS_NAMES = 100_000
MISS_RATE_BOUND = 160_000  # queries per second no target exceeds on misses (file sizing)
CEILING = "dnsperf -> upstream (ceiling)"


@dataclass
class Options:
    duration: float = 3.0
    repeats: int = 3
    warmup: float = 1.0
    workers: int = 2
    rss_names: int = RSS_NAMES
    scenarios: tuple[str, ...] = SCENARIOS
    targets: tuple[str, ...] = ("ceiling", "dnsmasq", "unbound", "consuldns", "consuldns-n")
    rss: bool = True
    double: bool = True
    out: Path = RESULTS
    source: Path | None = None  # another consuldns tree to benchmark (PYTHONPATH)
    baseline_source: Path | None = None  # target consuldns-base runs this tree


@dataclass
class Measure:
    """Repetitions of one scenario against one target."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, **metrics: float) -> None:
        for key, value in metrics.items():
            self.values.setdefault(key, []).append(value)

    def summary(self) -> dict[str, dict[str, float]]:
        return {key: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
                for key, v in self.values.items() if v}


class Bench:
    """One comparison run: the shared upstream and agent, then each target in turn."""

    def __init__(self, options: Options, workdir: Path):
        self.o = options
        self.workdir = workdir
        self.server_cpus, self.rest_cpus = cpu_layout()
        self.results: dict[str, dict[str, Measure]] = {}
        self.rss: dict[str, dict[str, int]] = {}
        self.notes: list[str] = []
        self.kinds: dict[str, str] = {}  # label -> target name
        self.watching: set[str] = set()  # labels whose server watches the agent now
        self.upstream: Running | None = None
        self.agent: Running | None = None
        self._files = 0
        self.hits_file = dnsperf.write_queries(
            workdir / "hits.txt", (f"h{i}.hits.{_zone()}" for i in range(HIT_NAMES)))
        self.hot_file = dnsperf.write_queries(workdir / "consul-hot.txt", CONSUL_HOT)
        self.few_file = dnsperf.write_queries(workdir / "consul-few.txt", CONSUL_FEW)

    # ------------------------------------------------------------ lifecycle

    def run(self) -> dict:
        """Start everything, then per scenario: warm each target up and measure the targets
        in turn, repetition by repetition, so that a burst of load from elsewhere on the
        machine hits all of them rather than one."""
        started = time.monotonic()
        self.upstream = start_upstream(self.workdir / "upstream", self.rest_cpus)
        self.agent = start_agent(self.workdir / "agent", self.rest_cpus, self.o.double)
        _say(f"upstream: {self.upstream!r}; agent: {self.agent!r}")
        targets: dict[str, Running | None] = {}
        try:
            for target in self.o.targets:
                label, server = (CEILING, None) if target == "ceiling" else self._start(target)
                targets[label] = server
                self.kinds[label] = target
                _say(f"{label}: {server!r}" if server else label)
            for scenario in self.o.scenarios:
                _say(f"{scenario} ...")
                with self._targets_for(scenario, targets) as runs:
                    for label, server in runs.items():
                        self.results.setdefault(label, {})[scenario] = Measure()
                        self._with_target(label, server, scenario, self._warm)
                    for _ in range(self.o.repeats):
                        for label, server in runs.items():
                            self._with_target(label, server, scenario, self._measure)
        finally:
            for server in targets.values():
                if server is not None:
                    server.stop()
        try:
            if self.o.rss:
                for target in self.o.targets:
                    if target != "ceiling":
                        self._measure_rss(target)
        finally:
            self.agent.stop()
            self.upstream.stop()
        return self._document(time.monotonic() - started)

    @contextmanager
    def _targets_for(self, scenario: str, targets: dict[str, Running | None]):
        """The servers of one scenario. consul_watch runs each consuldns target as a twin
        started with --consul-http (the double's HTTP API), stopped afterwards; a consuldns
        from another tree (--baseline-source) may not know the flag and sits it out."""
        if scenario != "consul_watch":
            yield targets
            return
        if self.agent.http_address is None:
            self.notes.append("consul_watch skipped: the agent has no HTTP API (--no-double)")
            yield {}
            return
        runs, twins = {}, []
        try:
            for label, server in targets.items():
                kind = self.kinds[label]
                if kind in WATCHED_TARGETS:
                    _, server = self._start(kind, watch=True)
                    twins.append(server)
                    self.watching.add(label)
                if kind != "consuldns-base":
                    runs[label] = server
            yield runs
        finally:
            self.watching.clear()
            for twin in twins:
                twin.stop()

    def _start(self, target: str, big_cache: bool = False,
               watch: bool = False) -> tuple[str, Running]:
        wd = self.workdir / f"{target}-{self._next()}"
        cpus = self.server_cpus
        if target == "dnsmasq":
            size = CACHE_ENTRIES if big_cache else DNSMASQ_CACHE
            return "dnsmasq", start_dnsmasq(wd, self.upstream, self.agent, cpus=cpus,
                                            cache_size=size)
        if target == "unbound":
            return ("unbound (1 thread)",
                    start_unbound_forwarder(wd, self.upstream, self.agent, cpus=cpus))
        if target == "consuldns":
            return "consuldns", start_consuldns(wd, self.upstream, self.agent, workers=1,
                                                cpus=cpus, source=self.o.source, watch=watch)
        if target == "consuldns-base":  # --baseline-source: the same, from another tree
            return "consuldns (baseline)", start_consuldns(
                wd, self.upstream, self.agent, workers=1, cpus=cpus,
                source=self.o.baseline_source)
        if target == "consuldns-n":
            server = start_consuldns(wd, self.upstream, self.agent, workers=self.o.workers,
                                     cpus=all_cpus(), source=self.o.source, watch=watch)
            return server.name, server
        raise ValueError(f"unknown target {target!r}")

    def _with_target(self, label: str, server: Running | None, scenario: str, action) -> None:
        """Run action(label, target, scenario, forwarder); the ceiling is dnsperf straight at
        the upstream (or at the agent for consul names), pinned where a forwarder would be."""
        if server is not None:
            action(label, server, scenario, server)
            return
        target = self.agent if scenario.startswith("consul") else self.upstream
        pin(target.pid, self.server_cpus)
        try:
            action(label, target, scenario, None)
        finally:
            pin(target.pid, self.rest_cpus)

    # ------------------------------------------------------------ scenarios

    def _warm(self, label: str, target: Running, scenario: str, forwarder) -> None:
        """Fill the cache (one pass over the names), then a short unrecorded run."""
        if scenario in ("hits", "latency_hits"):
            dnsperf.run(target.port, self.hits_file, duration=30, max_runs=1, cpus=self.rest_cpus)
            self._closed_loop(target, self.hits_file, None, self.o.warmup)
        elif scenario == "misses":
            self._closed_loop(target, self._miss_file(self.o.warmup), None, self.o.warmup,
                              once=True)
        elif scenario in ("consul_hot", "consul_few", "consul_watch"):
            if label in self.watching:
                self._warm_until_pinned(label, target)
            self._closed_loop(target, self._consul_file(scenario), None, self.o.warmup)

    def _warm_until_pinned(self, label: str, target: Running) -> None:
        """Ask the hot name in short bursts until the agent hardly sees them: the watch has
        answered and its settle period (2 s by default) is over, answers are kept."""
        deadline = time.monotonic() + PIN_TIMEOUT
        while time.monotonic() < deadline:
            before = self.agent.queries_received()
            result = dnsperf.run(target.port, self.hot_file, duration=0.5, cpus=self.rest_cpus)
            if self.agent.queries_received() - before <= max(5, result.completed // 1000):
                return
        self.notes.append(f"consul_watch: {label} still asked the agent after "
                          f"{PIN_TIMEOUT:g} s of warm-up")

    def _measure(self, label: str, target: Running, scenario: str, forwarder) -> None:
        measure = self.results[label][scenario]
        if scenario == "hits":
            self._closed_loop(target, self.hits_file, measure, self.o.duration)
        elif scenario == "misses":
            self._closed_loop(target, self._miss_file(self.o.duration), measure,
                              self.o.duration, once=True)
        elif scenario in ("consul_hot", "consul_few", "consul_watch"):
            self._closed_loop(target, self._consul_file(scenario), measure, self.o.duration,
                              agent=self.agent if forwarder is not None else None)
        elif scenario == "latency_hits":
            self._fixed_rate(target, self.hits_file, measure)
        elif scenario == "latency_misses":
            self._fixed_rate(target, self._miss_file(self.o.duration, LATENCY_QPS), measure,
                             once=True)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")

    def _consul_file(self, scenario: str) -> Path:
        return self.few_file if scenario == "consul_few" else self.hot_file

    def _closed_loop(self, target: Running, path: Path, measure: Measure | None,
                     duration: float, *, agent: Running | None = None,
                     once: bool = False) -> None:
        """As fast as the target answers, at most 100 queries in flight; the file is read
        once (unique names) or in a loop (names that repeat)."""
        before_cpu = cpu_seconds(target.pid)
        before_ticks = cpu_seconds_ticks(target.pid)
        before_agent = agent.queries_received() if agent else None
        before_machine = machine_busy()
        ours = [p for p in (target, self.upstream, self.agent)]
        before_ours = sum(cpu_seconds(p.pid) for p in ours)
        result = dnsperf.run(target.port, path, duration=duration, max_runs=1 if once else None,
                             cpus=self.rest_cpus)
        cpu = cpu_seconds(target.pid) - before_cpu
        ticks = cpu_seconds_ticks(target.pid) - before_ticks
        if measure is None:
            return
        elsewhere = (machine_busy() - before_machine
                     - (sum(cpu_seconds(p.pid) for p in ours) - before_ours)
                     - result.client_cpu)
        completed = max(result.completed, 1)
        metrics = {"qps": result.qps, "lost": result.lost, "completed": result.completed,
                   "cpu_us": 1e6 * cpu / completed, "cpu_us_stat": 1e6 * ticks / completed,
                   "noerror": result.rcodes.get("NOERROR", 0) / completed,
                   "server_cpu_util": cpu / max(result.runtime, 1e-9),
                   "elsewhere_cpu": max(elsewhere, 0.0) / max(result.runtime, 1e-9)}
        after_agent = agent.queries_received() if agent else None
        if before_agent is not None and after_agent is not None:
            metrics["upstream_share"] = (after_agent - before_agent) / completed
        measure.add(**metrics)

    def _fixed_rate(self, target: Running, path: Path, measure: Measure,
                    once: bool = False) -> None:
        result = dnsperf.run(target.port, path, duration=self.o.duration,
                             max_runs=1 if once else None,
                             max_qps=LATENCY_QPS, cpus=self.rest_cpus, verbose=True)
        measure.add(p50_ms=1e3 * result.percentile(0.50), p99_ms=1e3 * result.percentile(0.99),
                    qps=result.qps, lost=result.lost, completed=result.completed)

    def _miss_file(self, duration: float, rate: int = MISS_RATE_BOUND) -> Path:
        """Names never asked before (any target, any run): each one is an upstream round trip."""
        number = self._next()
        count = int(rate * duration * 1.2) + 1000
        return dnsperf.write_queries(
            self.workdir / "miss.txt", (f"m{i}.r{number}.miss.{_zone()}" for i in range(count)))

    # ------------------------------------------------------------ memory

    def _measure_rss(self, target: str) -> None:
        """Memory of a fresh instance before and after RSS_NAMES distinct names were cached:
        each name asked twice, by two dnsperf runs (two sets of source ports, as two clients
        would), so that workers which each kept their own copy of a name show it."""
        label, server = self._start(target, big_cache=True)
        _say(f"{label}: RSS with {self.o.rss_names} cached names ...")
        try:
            idle, idle_pss = rss_kib(server.pid), pss_kib(server.pid)
            path = dnsperf.write_queries(self.workdir / "rss.txt",
                                         (f"n{i}.rss.{_zone()}" for i in range(self.o.rss_names)))
            runs = [dnsperf.run(server.port, path, duration=120, max_runs=1, cpus=self.rest_cpus)
                    for _ in range(2)]
            time.sleep(0.5)
            self.rss[label] = {"idle_kib": idle, "filled_kib": rss_kib(server.pid),
                               "idle_pss_kib": idle_pss, "filled_pss_kib": pss_kib(server.pid),
                               "names": self.o.rss_names,
                               "answered": sum(run.completed for run in runs),
                               "lost": sum(run.lost for run in runs)}
        finally:
            server.stop()

    # ------------------------------------------------------------ output

    def _next(self) -> int:
        self._files += 1
        return self._files

    def _document(self, elapsed: float) -> dict:
        return {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "elapsed_s": round(elapsed, 1),
            "machine": {"cpus": os.cpu_count(), "python": python_version(),
                        "dnsmasq": dnsmasq_version(), "unbound": unbound_version(),
                        "dnsperf": dnsperf_version()},
            "setup": {
                "upstream": self.upstream.name, "agent": self.agent.name,
                "server_cpus": self.server_cpus, "other_cpus": self.rest_cpus,
                "workers": self.o.workers, "duration_s": self.o.duration,
                "repeats": self.o.repeats, "warmup_s": self.o.warmup,
                "dnsperf_clients": dnsperf.CLIENTS, "dnsperf_outstanding": dnsperf.OUTSTANDING,
                "hit_names": HIT_NAMES, "cache_entries": CACHE_ENTRIES,
                "dnsmasq_cache_size": DNSMASQ_CACHE, "latency_qps": LATENCY_QPS,
                "consul_hot": list(CONSUL_HOT), "consul_few": list(CONSUL_FEW),
            },
            "results": {target: {s: m.summary() for s, m in scenarios.items()}
                        for target, scenarios in self.results.items()},
            "rss": self.rss,
            "notes": self.notes,
        }


def _zone() -> str:
    return "bench."


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _check_tools() -> list[str]:
    missing = []
    for path, package in ((DNSMASQ, "dnsmasq-base"), (UNBOUND, "unbound")):
        if not os.path.exists(path):
            missing.append(package)
    if shutil.which(DNSPERF) is None:
        missing.append("dnsperf")
    if shutil.which("taskset") is None:
        missing.append("util-linux")
    return missing


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 s runs, 1 repetition, 10 000 names for RSS")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 3)")
    parser.add_argument("--repeats", type=int, help="measured runs per scenario (default 3)")
    parser.add_argument("--workers", type=int, default=max(os.cpu_count() or 1, 2),
                        help="workers of the multi-process consuldns (default: CPU count)")
    parser.add_argument("--targets", default=None,
                        help="comma list of ceiling,dnsmasq,unbound,consuldns,consuldns-n")
    parser.add_argument("--scenarios", default=None, help="comma list of " + ",".join(SCENARIOS))
    parser.add_argument("--no-rss", action="store_true", help="skip the 100k-name RSS fill")
    parser.add_argument("--no-double", action="store_true",
                        help="use the unbound stand-in for the Consul agent")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where JSON and PNG go")
    parser.add_argument("--consuldns-source", type=Path, default=None,
                        help="directory holding another consuldns package to benchmark")
    parser.add_argument("--baseline-source", type=Path, default=None,
                        help="adds target consuldns-base: consuldns from this directory, for "
                             "before/after comparisons in one run")
    args = parser.parse_args(argv)
    options = Options(workers=args.workers, out=args.out, rss=not args.no_rss,
                      double=not args.no_double, source=args.consuldns_source,
                      baseline_source=args.baseline_source)
    if args.baseline_source and not args.targets:
        options.targets = (*options.targets, "consuldns-base")
    if args.quick:
        options.duration, options.repeats, options.warmup, options.rss_names = 1.0, 1, 0.5, 10_000
    if args.duration:
        options.duration = args.duration
    if args.repeats:
        options.repeats = args.repeats
    if args.targets:
        options.targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    if args.scenarios:
        options.scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
        unknown = set(options.scenarios) - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    missing = _check_tools()
    if missing:
        print(f"missing: apt-get install {' '.join(missing)}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="consuldns-bench-"))
    try:
        document = Bench(options, workdir).run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report.table(document))
    json_path, png_path = report.write(document, options.out)
    print(f"\nwrote {json_path}" + (f" and {png_path}" if png_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
