"""A bounded soak of `consuldns serve`: `python -m benchmarks.soak [--minutes 5]`.

Never part of the test suite (issue 7). Starts unbound, the Consul double, a scriptable
upstream for `flaky.test.` and consuldns on loopback, then for --minutes runs a mixed load
(UDP and TCP, cache hits, TTL-0 agent names, a 40-instance service that needs TCP after TC,
NXDOMAIN, pipelined TCP, names of the flaky zone) while it injects faults in turn into the
agent (latency, silence, lost servers, TCP closed) and into the flaky upstream (silence,
SERVFAIL, garbage, slowness, spoofed noise), and changes the catalog. It samples consuldns's
RSS and open file descriptors every few seconds.

Pass: zero lost answers (every well-formed query gets a reply before 6 s), zero wrong
answers (an address that is not in the catalog, NXDOMAIN for a registered service), RSS at
the end within 12 MB of the figure after the 30 s warm-up (the cache fills meanwhile), and
open fds back to their number before the load once it is over. Writes
benchmarks/results/soak-TIMESTAMP.json; exits 1 on a failure. Every server listens on
127.0.0.1; the load is bounded by --minutes and --rate.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode

from tests.e2e.client import read_frame
from tests.e2e.fake_upstream import FakeUpstream, answer_a
from tests.harness import catalogs
from tests.harness import upstream as zone
from tests.harness.consuldns import start_consuldns
from tests.harness.upstream import start_unbound

RESULTS = Path(__file__).resolve().parent / "results"
# Over consuldns's deadlines (the agent 2 s, upstreams 4.5 s) and what stub clients wait (glibc
# 5 s): a reply later than this is lost.
CLIENT_TIMEOUT = 6.0
BIG_ADDRESSES = tuple(f"127.1.0.{i}" for i in range(1, 41))
FLAKY_ADDRESS = "192.0.2.77"
WARMUP_SECONDS = 30.0
RSS_SLACK_KB = 12 * 1024  # "flat": at most this much above the warm-up figure
FD_SLACK = 2  # open fds once quiet again, against before the load
QUIET_WAIT = 30.0  # idle pooled sockets close within 2 x MAX_AGE, late listeners within 5 s
SETTLE_SECONDS = 3.0
FAULT_PERIOD = 12.0  # seconds per fault step


def catalog() -> dict:
    data = catalogs.default_catalog()
    for i, address in enumerate(BIG_ADDRESSES):
        data["nodes"].append({"name": f"big{i}", "address": address, "meta": {}, "checks": []})
        data["services"].append({"id": f"big-{i}", "name": "big", "node": f"big{i}",
                                 "address": "", "port": 80, "tags": [], "checks": []})
    return data


# ---------------------------------------------------------------- the flaky upstream


class Flaky:
    """What the flaky.test upstream does now; switched by the fault thread."""

    MODES = ("ok", "silent", "servfail", "garbage", "slow", "noise")

    def __init__(self) -> None:
        self.mode = "ok"
        self.fake: FakeUpstream | None = None

    def handle(self, query: dns.message.Message, transport: str):
        mode = self.mode
        good = answer_a(query, [FLAKY_ADDRESS], ttl=1)
        if mode == "silent":
            return None
        if mode == "servfail":
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply.to_wire()
        if mode == "garbage":
            return good[:-3]
        if mode == "slow":
            time.sleep(0.3)
            return good
        if mode == "noise":
            return [struct.pack("!H", query.id) + os.urandom(30), os.urandom(9), good]
        return good


# ---------------------------------------------------------------- the load


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.answered = 0
        self.lost: list[str] = []
        self.wrong: list[str] = []
        self.rcodes: collections.Counter[str] = collections.Counter()
        self.kinds: collections.Counter[str] = collections.Counter()

    def record(self, kind: str, name: str, reply: dns.message.Message | None,
               problem: str | None) -> None:
        with self.lock:
            self.sent += 1
            self.kinds[kind] += 1
            if reply is None:
                self.lost.append(f"{time.strftime('%H:%M:%S')} {kind} {name}")
                return
            self.answered += 1
            self.rcodes[dns.rcode.to_text(reply.rcode())] += 1
            if problem:
                self.wrong.append(f"{time.strftime('%H:%M:%S')} {kind} {name}: {problem}")


def addresses(message: dns.message.Message) -> set[str]:
    return {rdata.address for rrset in message.answer if rrset.rdtype in (1, 28)
            for rdata in rrset}


def exchange_udp(sock: socket.socket, query: dns.message.Message) -> dns.message.Message | None:
    sock.send(query.to_wire())
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
        except ConnectionRefusedError:
            return None
        reply = dns.message.from_wire(data)
        if reply.id == query.id:
            return reply
    return None


def exchange_tcp(host: str, port: int,
                 queries: list[dns.message.Message]) -> list[dns.message.Message | None]:
    """Pipelined over one connection; replies may come in any order."""
    found: dict[int, dns.message.Message] = {}
    try:
        with socket.create_connection((host, port), timeout=CLIENT_TIMEOUT) as conn:
            conn.sendall(b"".join(struct.pack("!H", len(w)) + w
                                  for w in (q.to_wire() for q in queries)))
            deadline = time.monotonic() + CLIENT_TIMEOUT
            while len(found) < len(queries) and time.monotonic() < deadline:
                conn.settimeout(max(deadline - time.monotonic(), 0.01))
                reply = dns.message.from_wire(read_frame(conn))
                found[reply.id] = reply
    except (OSError, EOFError):
        pass
    return [found.get(q.id) for q in queries]


class Load:
    """Client threads running the mix until stop is set."""

    def __init__(self, host: str, port: int, tally: Tally, rate: float, seed: int,
                 web_now: callable) -> None:
        self.host, self.port = host, port
        self.tally = tally
        self.pause = 1.0 / rate
        self.rng = random.Random(seed)
        self.web_now = web_now  # the web addresses the catalog may hold right now
        self.stop = threading.Event()

    def run(self) -> None:
        rng = random.Random(self.rng.random())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((self.host, self.port))
            while not self.stop.is_set():
                getattr(self, "_" + rng.choice(MIX))(sock, rng)
                time.sleep(self.pause * rng.uniform(0.5, 1.5))

    def _check_web(self, reply: dns.message.Message) -> str | None:
        if reply.rcode() == dns.rcode.NXDOMAIN:
            return "NXDOMAIN for a registered service"
        extra = addresses(reply) - self.web_now()
        return f"unknown addresses {sorted(extra)}" if extra else None

    def _cached(self, sock, rng) -> None:
        reply = exchange_udp(sock, dns.message.make_query(zone.WWW.name, "A"))
        problem = None
        if reply is not None and addresses(reply) != set(zone.WWW.values):
            problem = f"rcode {dns.rcode.to_text(reply.rcode())} {sorted(addresses(reply))}"
        self.tally.record("cached", zone.WWW.name, reply, problem)

    def _multi(self, sock, rng) -> None:
        reply = exchange_udp(sock, dns.message.make_query(zone.MULTI.name, "A", use_edns=0))
        problem = None
        if reply is not None and addresses(reply) != set(zone.MULTI.values):
            problem = f"rcode {dns.rcode.to_text(reply.rcode())}"
        self.tally.record("multi", zone.MULTI.name, reply, problem)

    def _web(self, sock, rng) -> None:
        rdtype = rng.choice(["A", "A", "AAAA"])
        reply = exchange_udp(sock, dns.message.make_query("web.service.consul", rdtype))
        self.tally.record(f"web-{rdtype}", "web.service.consul", reply,
                          None if reply is None else self._check_web(reply))

    def _big(self, sock, rng) -> None:
        query = dns.message.make_query("big.service.consul", "A")
        reply = exchange_udp(sock, query)
        kind = "big-udp"
        if reply is not None and reply.flags & dns.flags.TC:
            kind = "big-tc-tcp"
            reply = exchange_tcp(self.host, self.port, [query])[0]
        problem = None
        if reply is not None:
            if reply.rcode() == dns.rcode.NXDOMAIN:
                problem = "NXDOMAIN for a registered service"
            elif reply.rcode() == dns.rcode.NOERROR and addresses(reply) != set(BIG_ADDRESSES):
                problem = f"{len(addresses(reply))} of 40 addresses over TCP"
        self.tally.record(kind, "big.service.consul", reply, problem)

    def _nxdomain(self, sock, rng) -> None:
        name = f"nx{rng.randrange(500)}.example.test"
        reply = exchange_udp(sock, dns.message.make_query(name, "A"))
        problem = None
        if reply is not None and reply.rcode() != dns.rcode.NXDOMAIN:
            problem = f"rcode {dns.rcode.to_text(reply.rcode())}"
        self.tally.record("nxdomain", name, reply, problem)

    def _flaky(self, sock, rng) -> None:
        name = f"n{rng.randrange(200)}.flaky.test"
        reply = exchange_udp(sock, dns.message.make_query(name, "A"))
        problem = None
        if reply is not None and reply.rcode() == dns.rcode.NOERROR and addresses(reply) != {
                FLAKY_ADDRESS}:
            problem = f"garbage served: {sorted(addresses(reply))}"
        if reply is not None and reply.rcode() == dns.rcode.NXDOMAIN:
            problem = "NXDOMAIN from a failing upstream"
        self.tally.record("flaky", name, reply, problem)

    def _pipelined(self, sock, rng) -> None:
        names = [zone.WWW.name, "db.service.consul", "web.service.consul", zone.ALIAS.name,
                 f"nx{rng.randrange(500)}.example.test"]
        queries = [dns.message.make_query(name, "A") for name in names]
        for name, reply in zip(names, exchange_tcp(self.host, self.port, queries)):
            problem = None
            if reply is not None and name == "web.service.consul":
                problem = self._check_web(reply)
            self.tally.record("tcp-pipelined", name, reply, problem)


MIX = ("cached", "cached", "cached", "multi", "web", "web", "web", "big", "nxdomain", "flaky",
       "flaky", "pipelined")


# ---------------------------------------------------------------- faults and sampling


AGENT_STEPS = (("latency", 0.3), (None, 0), ("drop", 0), (None, 0), ("servfail", 0.5),
               (None, 0), ("close_tcp", 0), (None, 0))


def inject_faults(control, flaky: Flaky, stop: threading.Event, log: list) -> None:
    rng = random.Random(7)
    step = 0
    removed = None
    started = time.monotonic()
    while not stop.wait(FAULT_PERIOD):
        kind, delay = AGENT_STEPS[step % len(AGENT_STEPS)]
        control.clear_faults()
        if kind:
            control.set_fault(kind, delay=delay)
        flaky.mode = Flaky.MODES[step % len(Flaky.MODES)]
        # Catalog churn: one web instance leaves, and comes back one step later.
        if removed is None and rng.random() < 0.5:
            removed = "web-node1"
            control.set_check("critical", service_id=removed)
        elif removed is not None:
            control.set_check("passing", service_id=removed)
            removed = None
        log.append({"t": round(time.monotonic() - started, 1), "agent": kind or "none",
                    "flaky": flaky.mode, "web-node1": "critical" if removed else "passing"})
        step += 1
    control.clear_faults()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def quiet_again(server, fds_wanted: int) -> dict:
    """RSS and fds once the server is idle: pooled upstream sockets and late-answer listeners
    close on timers (consuldns/upstream/sockets.py: MAX_AGE, LATE_ANSWER_GRACE), so the
    descriptors are polled until they are back, QUIET_WAIT seconds at most."""
    deadline = time.monotonic() + QUIET_WAIT
    while open_fds(server.pid) > fds_wanted and time.monotonic() < deadline:
        time.sleep(1)
    return {"rss_kb": rss_kb(server.pid), "fds": open_fds(server.pid)}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sample(pid: int, started: float, stop: threading.Event, samples: list) -> None:
    while True:
        samples.append({"t": round(time.monotonic() - started, 1), "rss_kb": rss_kb(pid),
                        "fds": open_fds(pid)})
        if stop.wait(5.0):
            return


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--rate", type=float, default=150.0,
                        help="queries per second per client thread (at most)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.minutes * 60 <= WARMUP_SECONDS + 30:
        parser.error(f"--minutes must leave time after the {WARMUP_SECONDS:.0f} s warm-up")

    from tests.consul_double.process import start_double

    workdir = Path(tempfile.mkdtemp(prefix="consuldns-soak-"))
    flaky = Flaky()
    started_items = []
    try:
        unbound = start_unbound(workdir / "unbound")
        started_items.append(unbound)
        double = start_double(catalog())
        started_items.append(double)
        flaky.fake = FakeUpstream(flaky.handle)
        started_items.append(flaky.fake)
        config = f'[[zones]]\nname = "flaky.test"\nservers = ["{flaky.fake.address}"]\n'
        server = start_consuldns(workdir / "consuldns", consul=double, upstreams=[unbound],
                                 config=config)
        started_items.append(server)
        print(f"consuldns pid {server.pid} on {server.address}; agent double "
              f"{double.host}:{double.port}; {args.minutes:g} min, {args.clients} clients "
              f"at <= {args.rate:g} q/s each", flush=True)
        result = soak(server, double, flaky, args)
    finally:
        for item in reversed(started_items):
            item.stop()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result)
    print(f"written to {out}")
    return 0 if result["pass"] else 1


def soak(server, double, flaky: Flaky, args) -> dict:
    tally = Tally()
    web_all = set(catalogs.WEB_HEALTHY)
    stop = threading.Event()
    loads = [Load(server.host, server.port, tally, args.rate, args.seed + i, lambda: web_all)
             for i in range(args.clients)]
    samples: list = []
    faults: list = []
    quiet_start = {"rss_kb": rss_kb(server.pid), "fds": open_fds(server.pid)}
    started = time.monotonic()
    threads = [threading.Thread(target=load.run, daemon=True) for load in loads]
    threads.append(threading.Thread(target=sample, args=(server.pid, started, stop, samples),
                                    daemon=True))
    threads.append(threading.Thread(target=inject_faults,
                                    args=(double.control, flaky, stop, faults), daemon=True))
    for thread in threads:
        thread.start()
    end = started + args.minutes * 60
    next_report = started + 30
    while time.monotonic() < end:
        time.sleep(min(1.0, max(end - time.monotonic(), 0)))
        if time.monotonic() >= next_report:
            next_report += 30
            last = samples[-1] if samples else {}
            print(f"  {time.monotonic() - started:5.0f} s: {tally.sent} queries, "
                  f"{len(tally.lost)} lost, {len(tally.wrong)} wrong, rss {last.get('rss_kb')} kB, "
                  f"fds {last.get('fds')}", flush=True)
    for load in loads:
        load.stop.set()
    stop.set()
    for thread in threads:
        thread.join(timeout=CLIENT_TIMEOUT + 2)
    time.sleep(SETTLE_SECONDS)  # in-flight upstream exchanges end; clients have hung up
    quiet_end = quiet_again(server, quiet_start["fds"] + FD_SLACK)
    samples.append({"t": round(time.monotonic() - started, 1), **quiet_end})
    alive = server.alive()
    warm = next(s for s in samples if s["t"] >= WARMUP_SECONDS)
    last = samples[-1]
    rss_flat = last["rss_kb"] <= warm["rss_kb"] + RSS_SLACK_KB
    fds_flat = quiet_end["fds"] <= quiet_start["fds"] + FD_SLACK
    return {
        "minutes": args.minutes, "clients": args.clients, "rate_per_client": args.rate,
        "queries": tally.sent, "answered": tally.answered, "lost": len(tally.lost),
        "wrong": len(tally.wrong), "lost_examples": tally.lost[:20],
        "wrong_examples": tally.wrong[:20], "rcodes": dict(tally.rcodes),
        "kinds": dict(tally.kinds),
        "rss_kb": {"start": quiet_start["rss_kb"], "after_warmup": warm["rss_kb"],
                   "end": quiet_end["rss_kb"], "max": max(s["rss_kb"] for s in samples)},
        "fds": {"start": quiet_start["fds"], "after_warmup": warm["fds"],
                "end": quiet_end["fds"], "max": max(s["fds"] for s in samples)},
        "rss_flat": rss_flat, "fds_flat": fds_flat, "server_alive": alive,
        "fault_steps": faults, "samples": samples,
        "pass": alive and rss_flat and fds_flat and not tally.lost and not tally.wrong,
    }


def print_summary(result: dict) -> None:
    rss, fds = result["rss_kb"], result["fds"]
    print(f"queries {result['queries']}, answered {result['answered']}, lost {result['lost']}, "
          f"wrong {result['wrong']}; rcodes {result['rcodes']}")
    print(f"RSS kB start {rss['start']}, after warm-up {rss['after_warmup']}, end {rss['end']}, "
          f"max {rss['max']}; fds start {fds['start']}, after warm-up {fds['after_warmup']}, "
          f"end {fds['end']}, max {fds['max']}")
    for example in result["lost_examples"][:5] + result["wrong_examples"][:5]:
        print("  ", example)
    print("PASS" if result["pass"] else "FAIL")


if __name__ == "__main__":
    sys.exit(main())
