"""The comparison's outputs: a Markdown table of medians with min-max and ratios against
dnsmasq, the JSON document and a PNG chart (matplotlib, the `bench` extra)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

BASELINE = "dnsmasq"

# (title, scenario, metric, kind) rows of the table, in order.
ROWS = (
    ("cache hits: qps", "hits", "qps", "qps"),
    ("cache hits: CPU us/query", "hits", "cpu_us", "us"),
    ("  server CPU busy (of 1 CPU)", "hits", "server_cpu_util", "load"),
    ("  CPU busy elsewhere on the machine", "hits", "elsewhere_cpu", "load"),
    ("misses: qps", "misses", "qps", "qps"),
    ("misses: CPU us/query", "misses", "cpu_us", "us"),
    ("  CPU busy elsewhere on the machine", "misses", "elsewhere_cpu", "load"),
    ("consul TTL 0, one name: qps", "consul_hot", "qps", "qps"),
    ("  share sent to the agent", "consul_hot", "upstream_share", "pct"),
    ("consul TTL 0, 4 names: qps", "consul_few", "qps", "qps"),
    ("  share sent to the agent", "consul_few", "upstream_share", "pct"),
    ("consul TTL 0, one name, watch on: qps", "consul_watch", "qps", "qps"),
    ("  share sent to the agent", "consul_watch", "upstream_share", "pct"),
    ("hits @2000 qps: p50 ms", "latency_hits", "p50_ms", "ms"),
    ("hits @2000 qps: p99 ms", "latency_hits", "p99_ms", "ms"),
    ("misses @2000 qps: p50 ms", "latency_misses", "p50_ms", "ms"),
    ("misses @2000 qps: p99 ms", "latency_misses", "p99_ms", "ms"),
)


def _fmt(value: float, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "qps":
        return f"{value / 1000:.1f}k"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "ms":
        return f"{value:.3f}"
    if kind == "mib":
        return f"{value:.0f}"
    return f"{value:.2f}"


def _cell(stats: dict | None, base: dict | None, kind: str) -> str:
    if not stats:
        return "-"
    text = _fmt(stats["median"], kind)
    if stats["min"] != stats["max"]:
        text += f" ({_fmt(stats['min'], kind)}-{_fmt(stats['max'], kind)})"
    if base and kind not in ("pct", "load") and base["median"]:
        text += f" {stats['median'] / base['median']:.2f}x"
    return text


def table(document: dict) -> str:
    """Markdown: one row per metric, one column per server; cells 'median (min-max) ratio'."""
    results = document["results"]
    servers = list(results)
    base = results.get(BASELINE, {})
    lines = ["| metric | " + " | ".join(servers) + " |",
             "|---|" + "---|" * len(servers)]
    for title, scenario, metric, kind in ROWS:
        if not any(scenario in results[s] for s in servers):
            continue
        cells = [_cell(results[s].get(scenario, {}).get(metric), base.get(scenario, {}).get(
            metric), kind) for s in servers]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lost = []
    for server in servers:
        total = sum(sum(m.get("lost", {}).get("runs", [])) for m in results[server].values())
        sent = sum(sum(m.get("completed", {}).get("runs", [])) for m in results[server].values())
        lost.append(f"{int(total)} of {int(total + sent)}")
    lines.append("| lost queries (all measured runs) | " + " | ".join(lost) + " |")
    rss = document.get("rss") or {}
    if rss:
        names = next(iter(rss.values()))["names"]
        lines.append(_memory_row(f"RSS MiB, {names} names cached", rss, servers, ""))
        lines.append(_memory_row(f"PSS MiB, {names} names cached", rss, servers, "pss_"))
    setup = document["setup"]
    lines.append("")
    lines.append(
        f"Medians of {setup['repeats']} runs of {setup['duration_s']:g} s (min-max), ratio = "
        f"value / dnsmasq's. Upstream: {setup['upstream']}; agent: {setup['agent']}. "
        f"Server under test on CPU {setup['server_cpus']}, dnsperf/upstream/agent on CPU "
        f"{setup['other_cpus']} (multi-worker consuldns: all CPUs). dnsperf "
        f"{document['machine']['dnsperf']}, -c {setup['dnsperf_clients']} "
        f"-q {setup['dnsperf_outstanding']}; dnsmasq {document['machine']['dnsmasq']}, "
        f"unbound {document['machine']['unbound']}, Python {document['machine']['python']}; "
        f"{document['elapsed_s']:.0f} s in all.")
    lines += _workers_lines(document)
    watched = _watch_note(results)
    if watched:
        lines.append("")
        lines.append(watched)
    return "\n".join(lines)


def _memory_row(title: str, rss: dict, servers: list[str], kind: str) -> str:
    """'filled (idle idle) ratio' per server; kind "" for RSS, "pss_" for PSS."""
    base = rss.get(BASELINE, {}).get(f"filled_{kind}kib")
    cells = []
    for server in servers:
        entry = rss.get(server)
        if not entry or f"filled_{kind}kib" not in entry:
            cells.append("-")
            continue
        filled = entry[f"filled_{kind}kib"]
        text = f"{filled / 1024:.0f} (idle {entry[f'idle_{kind}kib'] / 1024:.0f})"
        if base:
            text += f" {filled / base:.2f}x"
        cells.append(text)
    return f"| {title} | " + " | ".join(cells) + " |"


def _workers_lines(document: dict) -> list[str]:
    """consuldns with N workers against one: what the agent was asked, and memory."""
    results, rss = document["results"], document.get("rss") or {}
    many = next((s for s in results if s.startswith("consuldns x")), None)
    if many is None or "consuldns" not in results:
        return []
    parts = []
    for scenario, title in (("consul_hot", "one TTL-0 name"), ("consul_few", "4 names")):
        shares = [results[s].get(scenario, {}).get("upstream_share") for s in (many, "consuldns")]
        if all(shares):
            parts.append(f"share sent to the agent, {title}: {100 * shares[0]['median']:.1f}% "
                         f"vs {100 * shares[1]['median']:.1f}%")
    for kind, title in (("", "RSS"), ("pss_", "PSS")):
        filled = [rss.get(s, {}).get(f"filled_{kind}kib") for s in (many, "consuldns")]
        if all(filled):
            parts.append(f"{title} {filled[0] / 1024:.0f} MiB vs {filled[1] / 1024:.0f} "
                         f"({filled[0] / filled[1]:.2f}x)")
    return ["", f"{many} against one worker: " + "; ".join(parts) + "."] if parts else []


def _watch_note(results: dict) -> str:
    """The closing note on the watched TTL-0 name: consuldns against dnsmasq's rate."""
    base = results.get(BASELINE, {}).get("consul_watch", {}).get("qps")
    ours = results.get("consuldns", {}).get("consul_watch", {})
    if not base or not ours.get("qps"):
        return ""
    share = ours.get("upstream_share", {}).get("median")
    agent = f", {100 * share:.2f}% of its queries sent to the agent" if share is not None else ""
    return (f"Watch on (consuldns started with --consul-http, the double's HTTP API): a hot "
            f"TTL-0 name at {_fmt(ours['qps']['median'], 'qps')} qps{agent}, "
            f"{ours['qps']['median'] / base['median']:.2f}x dnsmasq's "
            f"{_fmt(base['median'], 'qps')} (target: at least 1x, as a cache hit).")


def write(document: dict, out: Path) -> tuple[Path, Path | None]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = out / f"compare-{stamp}.json"
    json_path.write_text(json.dumps(document, indent=2, sort_keys=False))
    (out / "latest.json").write_text(json_path.read_text())
    png_path = out / f"compare-{stamp}.png"
    try:
        chart(document, png_path)
    except ImportError:
        return json_path, None
    (out / "latest.png").write_bytes(png_path.read_bytes())
    return json_path, png_path


_PANELS = (
    ("cache hits (qps, higher is better)", "hits", "qps", 1e-3, "k qps"),
    ("misses (qps)", "misses", "qps", 1e-3, "k qps"),
    ("consul TTL 0, one name (qps)", "consul_hot", "qps", 1e-3, "k qps"),
    ("CPU per cache hit (us, lower is better)", "hits", "cpu_us", 1, "us"),
    ("CPU per miss (us)", "misses", "cpu_us", 1, "us"),
    ("latency @2000 qps, hits: p50 / p99 (ms)", "latency_hits", None, 1, "ms"),
    ("latency @2000 qps, misses: p50 / p99 (ms)", "latency_misses", None, 1, "ms"),
    ("consul TTL 0, 4 names (qps)", "consul_few", "qps", 1e-3, "k qps"),
    ("consul TTL 0: share sent to the agent (%)", "consul_hot", "share", 1, "%"),
    ("consul TTL 0, one name, watch on (qps)", "consul_watch", "qps", 1e-3, "k qps"),
)


def chart(document: dict, path: Path) -> None:
    """Bar per server and metric, min-max as error bars; dnsmasq's bar in a darker colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = document["results"]
    servers = list(results)
    rss = document.get("rss") or {}
    panels = [p for p in _PANELS if any(p[1] in results[s] for s in servers)]
    count = len(panels) + (1 if rss else 0)
    columns = 3
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.6 * rows), squeeze=False)
    colours = [("#444444" if s == BASELINE else "#4c72b0") for s in servers]
    for ax, (title, scenario, metric, scale, unit) in zip(axes.flat, panels):
        if metric == "share":
            _share_panel(ax, results, servers)
        elif metric is None:
            _latency_panel(ax, results, servers, scenario)
        else:
            _bars(ax, servers, [results[s].get(scenario, {}).get(metric) for s in servers],
                  scale, colours)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
    if rss:
        _memory_panel(axes.flat[len(panels)], rss, servers)
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    setup = document["setup"]
    fig.suptitle(f"consuldns vs dnsmasq vs unbound: medians of {setup['repeats']} x "
                 f"{setup['duration_s']:g} s, dnsperf on loopback ({document['when']})",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _short(name: str) -> str:
    return name.replace("dnsperf -> upstream (ceiling)", "ceiling").replace(" workers", "")


def _bars(ax, servers, stats, scale, colours) -> None:
    medians = [(s["median"] * scale if s else 0) for s in stats]
    low = [(s["median"] - s["min"]) * scale if s else 0 for s in stats]
    high = [(s["max"] - s["median"]) * scale if s else 0 for s in stats]
    ax.bar(range(len(servers)), medians, yerr=[low, high], color=colours, capsize=3)
    ax.set_xticks(range(len(servers)), [_short(s) for s in servers], rotation=20, fontsize=8)


def _latency_panel(ax, results, servers, scenario) -> None:
    _paired_bars(ax, servers, [
        ("p50", [results[s].get(scenario, {}).get("p50_ms") for s in servers]),
        ("p99", [results[s].get(scenario, {}).get("p99_ms") for s in servers])])


def _share_panel(ax, results, servers) -> None:
    """Share of the queries sent on to the agent, one TTL-0 name and four names, in %."""
    _paired_bars(ax, servers, [
        (title, [_scaled(results[s].get(name, {}).get("upstream_share"), 100) for s in servers])
        for title, name in (("one name", "consul_hot"), ("4 names", "consul_few"))])


def _memory_panel(ax, rss: dict, servers: list[str]) -> None:
    names = [s for s in servers if s in rss]
    _paired_bars(ax, names, [
        (title, [{"median": rss[s][key] / 1024} if key in rss[s] else None for s in names])
        for title, key in (("RSS", "filled_kib"), ("PSS", "filled_pss_kib"))])
    ax.set_title(f"memory with {next(iter(rss.values()))['names']} names cached (MiB)",
                 fontsize=10)


def _scaled(stats: dict | None, factor: float) -> dict | None:
    return {"median": stats["median"] * factor} if stats else None


def _paired_bars(ax, servers: list[str], series: list[tuple[str, list]]) -> None:
    """Two bars per server: (label, [stats with a median, or None, per server]) each."""
    width = 0.4
    for (label, stats), offset, colour in zip(series, (-width / 2, width / 2),
                                              ("#4c72b0", "#dd8452")):
        medians = [s["median"] if s else 0 for s in stats]
        ax.bar([i + offset for i in range(len(servers))], medians, width, color=colour,
               label=label)
    ax.set_xticks(range(len(servers)), [_short(s) for s in servers], rotation=20, fontsize=8)
    ax.legend(fontsize=8)
