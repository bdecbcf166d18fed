"""Run dnsperf (Debian's package) and read its report; write the query files it reads."""

from __future__ import annotations

import re
import resource
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.servers import DNSPERF

CLIENTS = 16  # source ports: SO_REUSEPORT spreads queries over workers by the 4-tuple hash
OUTSTANDING = 100  # dnsperf's default -q: a closed loop of at most 100 queries in flight
TIMEOUT = 2  # seconds before dnsperf counts a query lost


@dataclass
class Run:
    """What one dnsperf run reported."""

    sent: int
    completed: int
    lost: int
    qps: float
    runtime: float
    rcodes: dict[str, int]
    avg_latency: float
    client_cpu: float = 0.0  # dnsperf's own CPU seconds
    latencies: list[float] = field(default_factory=list)  # seconds, with verbose=True

    def percentile(self, fraction: float) -> float:
        """Latency percentile (nearest rank) in seconds, from the per-query lines."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index]


_NUMBER = r"([0-9.]+)"
_FIELDS = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "qps": re.compile(r"Queries per second:\s+" + _NUMBER),
    "runtime": re.compile(r"Run time \(s\):\s+" + _NUMBER),
    "avg_latency": re.compile(r"Average Latency \(s\):\s+" + _NUMBER),
}
_VERBOSE_LINE = re.compile(r"^> (\S+) \S+ \S+ ([0-9.]+)$", re.MULTILINE)


def run(port: int, query_file: Path, *, duration: float, cpus: str, host: str = "127.0.0.1",
        max_runs: int | None = None, max_qps: int | None = None, clients: int = CLIENTS,
        outstanding: int = OUTSTANDING, verbose: bool = False) -> Run:
    """One bounded dnsperf run against host:port over UDP, pinned to cpus."""
    argv = ["taskset", "-c", cpus, DNSPERF, "-s", host, "-p", str(port), "-d", str(query_file),
            "-l", f"{duration:g}", "-c", str(clients), "-q", str(outstanding),
            "-t", str(TIMEOUT)]
    if max_runs:
        argv += ["-n", str(max_runs)]
    if max_qps:
        argv += ["-Q", str(max_qps)]
    if verbose:
        argv += ["-v"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = parse(done.stdout + done.stderr, verbose)
    result.client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def parse(text: str, verbose: bool = False) -> Run:
    values = {}
    for key, pattern in _FIELDS.items():
        match = pattern.search(text)
        if match is None:
            raise RuntimeError(f"dnsperf output without {key!r}:\n{text[-2000:]}")
        values[key] = float(match.group(1))
    rcodes = {}
    match = re.search(r"Response codes:\s+(.*)", text)
    if match:
        for name, count in re.findall(r"([A-Z]+) (\d+) \(", match.group(1)):
            rcodes[name] = int(count)
    latencies = [float(m.group(2)) for m in _VERBOSE_LINE.finditer(text)] if verbose else []
    return Run(sent=int(values["sent"]), completed=int(values["completed"]),
               lost=int(values["lost"]), qps=values["qps"], runtime=values["runtime"],
               rcodes=rcodes, avg_latency=values["avg_latency"], latencies=latencies)


def write_queries(path: Path, names: Iterable[str], qtype: str = "A") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.writelines(f"{name} {qtype}\n" for name in names)
    return path
