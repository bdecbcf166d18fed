"""Operating consuldns through its real CLI: reload, admin endpoints, metrics, ACL, health,
privileges, the query log, `query --explain` and `cache flush` (issue 5)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.e2e.admin import delta, http, scrape
from tests.e2e.client import addresses, ask
from tests.e2e.fake_upstream import FakeUpstream, answer_a, wait_until
from tests.harness import catalogs
from tests.harness.consuldns import READY_QUESTION, product_env
from tests.harness.missing import unavailable
from tests.harness.ports import free_port, free_tcp_port
from tests.harness.procs import Server, dns_ready, launch
from tests.harness.tools import need_code_readable_by_nobody

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config" / "consuldns.toml"


# ------------------------------------------------------------------ helpers



def fixed(address: str, ttl: int = 0):
    return lambda query, transport: answer_a(query, [address], ttl=ttl)


def wait_for_log(server, text: str, timeout: float = 5.0) -> None:
    assert wait_until(lambda: text in server.log_text(), timeout), (
        f"{text!r} not logged:\n{server.log_text()[-3000:]}")


def ask_from(server, source: str, name: str, tcp: bool = False) -> dns.message.Message:
    """Query from a chosen loopback source address (the whole of 127/8 is ours)."""
    query = dns.message.make_query(name, "A")
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=3,
                             source=source)
    return dns.query.udp(query, server.host, port=server.port, timeout=3, source=source)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "consuldns", *args], capture_output=True,
                          text=True, timeout=30, env=product_env(), cwd=REPO_ROOT, check=False)


class QueryLoop:
    """Queries a name over and over from a thread (UDP and TCP in turn), recording answers."""

    def __init__(self, server, name: str):
        self.server, self.name = server, name
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tcp = False
        while not self._stop.is_set():
            try:
                reply = ask(self.server, self.name, tcp=tcp, timeout=2)
                if reply.rcode() != dns.rcode.NOERROR:
                    self.failures.append(dns.rcode.to_text(reply.rcode()))
                else:
                    self.answers.extend(addresses(reply))
            except Exception as exc:  # noqa: BLE001 (a timeout is a failure to report)
                self.failures.append(repr(exc))
            tcp = not tcp

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# ------------------------------------------------------------------ reload


def upstream_config(*servers: FakeUpstream, extra: str = "") -> str:
    listed = ", ".join(f'"{s.address}"' for s in servers)
    return f"[upstream]\nservers = [{listed}]\n{extra}"


def test_reload_switches_upstream_while_queries_keep_flowing(consuldns_server, fakes):
    old, new = fakes(fixed("192.0.2.1")), fakes(fixed("192.0.2.2"))
    server = consuldns_server(upstreams=[], config=upstream_config(old), user="root")
    loop = QueryLoop(server, "flow.test")
    try:
        assert wait_until(lambda: len(loop.answers) >= 20)
        (server.workdir / "consuldns.toml").write_text(upstream_config(new))
        server.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "192.0.2.2" in loop.answers)
        settled = len(loop.answers)
        assert wait_until(lambda: len(loop.answers) >= settled + 20)
    finally:
        loop.stop()
    assert loop.failures == []
    first_new = loop.answers.index("192.0.2.2")
    assert set(loop.answers[:first_new]) == {"192.0.2.1"}
    assert set(loop.answers[first_new:]) == {"192.0.2.2"}  # the old upstream is not asked again
    wait_for_log(server, "configuration reloaded")


def test_invalid_config_on_sighup_keeps_the_old_one(consuldns_server, fakes):
    good = fakes(fixed("192.0.2.1"))
    server = consuldns_server(upstreams=[], config=upstream_config(good), user="root",
                              admin=True)
    (server.workdir / "consuldns.toml").write_text('[upstream]\nservers = ["not-an-address"]\n'
                                                   "[cache]\nsiez = 5\n")
    server.send_signal(signal.SIGHUP)
    wait_for_log(server, "reload rejected, still serving the previous configuration")
    log_text = server.log_text()
    assert "upstream.servers[0]: 'not-an-address' is not an IP address" in log_text
    assert "cache.siez: unknown key; did you mean 'size'?" in log_text
    assert addresses(ask(server, "still.test")) == ["192.0.2.1"]
    metrics = scrape(server)
    assert metrics[("consuldns_config_reloads_total", frozenset({("result", "failure")}))] == 1
    assert metrics[("consuldns_config_last_reload_successful", frozenset())] == 0
    assert server.alive()


@pytest.fixture
def configured_server(request, tmp_path, consul_double):
    """start(config_for(port) -> TOML) -> Server: `consuldns serve --config` with no --listen
    flag, so the file's listen addresses count (the harness always passes --listen)."""
    started: list[Server] = []
    readable: list[Path] = []

    def start(config_for, user: str = "root") -> Server:
        workdir = tmp_path / f"configured-{len(started)}"
        workdir.mkdir()
        if user != "root":  # pytest's tmp dirs are 0700: the config must be readable by user
            readable.append(Path(tempfile.mkdtemp(prefix="consuldns-test-")))
            readable[-1].chmod(0o755)
        path = (readable[-1] if user != "root" else workdir) / "consuldns.toml"

        def argv(port: int) -> list[str]:
            path.write_text(config_for(port))
            path.chmod(0o644)
            return [sys.executable, "-m", "consuldns", "serve", "--config", str(path),
                    "--consul", consul_double.address, "--user", user]

        name, rdtype, rdclass = READY_QUESTION
        ready = dns_ready("127.0.0.1", name, 10.0, rdtype, rdclass)
        proc, port = launch("consuldns", argv, workdir, ready=ready, env=product_env(),
                            cwd=workdir)
        server = Server(proc, "127.0.0.1", port, workdir)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    for directory in readable:
        shutil.rmtree(directory, ignore_errors=True)


def test_reload_keeps_unchanged_zones_cached_and_moves_listeners(configured_server, fakes):
    corp, first, second = fakes(fixed("10.9.9.9", 300)), fakes(fixed("192.0.2.1", 300)), \
        fakes(fixed("192.0.2.2", 300))
    extra_port = free_port()

    def config(listen: list[int], default: FakeUpstream) -> str:
        ports = ", ".join(f'"127.0.0.1:{p}"' for p in listen)
        return (f'[server]\nlisten = [{ports}]\n[admin]\nlisten = "off"\n'
                f'[upstream]\nservers = ["{default.address}"]\n'
                f'[[zones]]\nname = "corp.test"\nservers = ["{corp.address}"]\n')

    server = configured_server(lambda port: config([port], first))
    assert addresses(ask(server, "www.corp.test")) == ["10.9.9.9"]
    assert addresses(ask(server, "www.other.test")) == ["192.0.2.1"]
    (server.workdir / "consuldns.toml").write_text(config([extra_port], second))
    server.send_signal(signal.SIGHUP)
    wait_for_log(server, "configuration reloaded")
    moved = type("Moved", (), {"host": "127.0.0.1", "port": extra_port})()
    asked_corp = len(corp.received)
    assert addresses(ask(moved, "www.corp.test")) == ["10.9.9.9"]
    assert len(corp.received) == asked_corp  # corp.test unchanged: still cached
    assert addresses(ask(moved, "www.other.test")) == ["192.0.2.2"]  # "." flushed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    with pytest.raises(dns.exception.Timeout):
        ask(server, "www.corp.test", timeout=0.5)


def test_reload_cannot_bind_a_low_port_after_dropping_root(configured_server, fakes):
    need_code_readable_by_nobody()
    fake = fakes(fixed("192.0.2.1"))

    def config(listen: list[str]) -> str:
        quoted = ", ".join(f'"{address}"' for address in listen)
        return (f'[server]\nlisten = [{quoted}]\n[admin]\nlisten = "off"\n'
                f'[upstream]\nservers = ["{fake.address}"]\n')

    server = configured_server(lambda port: config([f"127.0.0.1:{port}"]), user="nobody")
    path = Path(server.proc.args[server.proc.args.index("--config") + 1])
    path.write_text(config([f"127.0.0.1:{server.port}", "127.0.0.1:853"]))
    server.send_signal(signal.SIGHUP)
    wait_for_log(server, "cannot bind 127.0.0.1:853 (udp): permission denied. After dropping "
                         "privileges consuldns can no longer bind ports below 1024")
    assert addresses(ask(server, "still-here.test")) == ["192.0.2.1"]


# ------------------------------------------------------------------ admin listener


def test_metrics_count_exactly_what_was_sent(consuldns_server, fakes):
    fake = fakes(fixed("192.0.2.7", 300))
    server = consuldns_server(upstreams=[fake], admin=True,
                              config='[acl]\nallow = ["127.0.0.1/32"]\n')
    before = scrape(server)
    for _ in range(3):
        assert addresses(ask(server, "counted.test")) == ["192.0.2.7"]  # 1 miss, 2 hits
    assert addresses(ask(server, "counted.test", tcp=True)) == ["192.0.2.7"]  # hit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00\x01garbage", (server.host, server.port))  # dropped
    two_questions = dns.message.make_query("a.test", "A").to_wire()
    two_questions = two_questions[:5] + b"\x02" + two_questions[6:] + two_questions[12:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(two_questions, (server.host, server.port))
        assert sock.recv(512)[3] & 0x0F == dns.rcode.FORMERR
    assert ask_from(server, "127.0.0.2", "counted.test").rcode() == dns.rcode.REFUSED
    after = scrape(server)
    expected = {
        ("consuldns_queries_total", ("transport", "udp")): 6,
        ("consuldns_queries_total", ("transport", "tcp")): 1,
        ("consuldns_cache_misses_total", ("zone", ".")): 1,
        ("consuldns_cache_hits_total", ("zone", ".")): 3,
        ("consuldns_zone_queries_total", ("zone", ".")): 4,
        ("consuldns_responses_total", ("rcode", "NOERROR")): 4,
        ("consuldns_responses_total", ("rcode", "FORMERR")): 1,
        ("consuldns_responses_total", ("rcode", "REFUSED")): 1,
        ("consuldns_packets_dropped_total", None): 1,
        ("consuldns_queries_malformed_total", None): 1,
        ("consuldns_queries_refused_total", None): 1,
        ("consuldns_cache_coalesced_total", None): 0,
    }
    for (name, label), count in expected.items():
        labels = dict([label]) if label else {}
        assert delta(before, after, name, **labels) == count, (name, labels)
    upstream = {"group": "default", "server": fake.address}
    assert delta(before, after, "consuldns_upstream_queries_total", **upstream) == 1
    assert delta(before, after, "consuldns_upstream_request_duration_seconds_count",
                 **upstream) == 1
    assert after[("consuldns_cache_entries", frozenset())] >= 1


def test_clients_outside_allow_get_refused(consuldns_server, fakes):
    fake = fakes(fixed("192.0.2.7", 300))
    server = consuldns_server(upstreams=[fake], config='[acl]\nallow = ["127.0.0.1/32"]\n')
    assert addresses(ask_from(server, "127.0.0.1", "acl.test")) == ["192.0.2.7"]
    for tcp in (False, True):
        reply = ask_from(server, "127.0.0.2", "acl.test", tcp=tcp)
        assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
    assert [r.name for r in fake.received] == ["acl.test."]  # never forwarded for 127.0.0.2


def test_rate_limited_client_gets_refused_others_do_not(consuldns_server, fakes):
    fake = fakes(fixed("192.0.2.7", 300))
    # One query per 5 s after a burst of 5: the 10 queries below take far less than 5 s
    # even on a loaded machine, so the bucket refills by one at most.
    server = consuldns_server(upstreams=[fake], admin=True,
                              config="[server]\nrate_limit = 0.2\nrate_burst = 5\n")
    before = scrape(server)
    rcodes = [ask_from(server, "127.0.0.3", "rate.test").rcode() for _ in range(10)]
    assert rcodes[:5] == [dns.rcode.NOERROR] * 5
    assert rcodes.count(dns.rcode.REFUSED) >= 4
    assert ask_from(server, "127.0.0.4", "rate.test").rcode() == dns.rcode.NOERROR
    limited = delta(before, scrape(server), "consuldns_queries_rate_limited_total")
    assert limited == rcodes.count(dns.rcode.REFUSED)


def test_health_and_ready_follow_the_agent(consuldns_server, consul_double):
    server = consuldns_server(admin=True)
    assert http(server.admin_url + "/health") == (200, "ok\n")
    status, body = http(server.admin_url + "/ready")
    assert status == 200 and body.startswith("ready")
    consul_double.control.set_fault("drop")
    status, body = http(server.admin_url + "/ready")
    assert status == 503 and consul_double.address in body
    assert http(server.admin_url + "/health")[0] == 200  # still serving
    consul_double.control.clear_faults()
    assert http(server.admin_url + "/ready")[0] == 200
    consul_double.stop()
    assert http(server.admin_url + "/ready")[0] == 503
    status, body = http(server.admin_url + "/nope")
    assert status == 404 and "/metrics" in body
    assert http(server.admin_url + "/cache/flush")[0] == 405  # GET: it takes POST


def test_admin_port_in_use_keeps_dns_serving(consuldns_server, fakes):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        server = consuldns_server(upstreams=[fakes(fixed("192.0.2.3"))],
                                  extra_args=["--admin", f"127.0.0.1:{port}"])
        assert addresses(ask(server, "busy.test")) == ["192.0.2.3"]
        wait_for_log(server, f"admin listener 127.0.0.1:{port} not started")
    finally:
        taken.close()


# ------------------------------------------------------------------ upstream health


def test_failing_upstream_is_marked_down_probed_and_back(consuldns_server, fakes):
    state = {"healthy": False}

    def flaky(query, transport):
        if state["healthy"]:
            return answer_a(query, ["192.0.2.50"], ttl=0)
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.SERVFAIL)
        return reply.to_wire()

    sick, good = fakes(flaky), fakes(fixed("192.0.2.60"))
    server = consuldns_server(upstreams=[], admin=True, config=upstream_config(
        sick, good, extra="max_fails = 2\nhealth_interval = 0.2\n"))
    up = ("consuldns_upstream_up", frozenset({("group", "default"),
                                              ("server", sick.address)}))
    for i in range(2):
        assert addresses(ask(server, f"n{i}.health.test")) == ["192.0.2.60"]
    assert scrape(server)[up] == 0
    clients_before = [r for r in sick.received if r.name != "."]
    assert addresses(ask(server, "n3.health.test")) == ["192.0.2.60"]
    assert [r for r in sick.received if r.name != "."] == clients_before  # tried last
    assert wait_until(lambda: any(r.name == "." for r in sick.received))  # probed
    state["healthy"] = True
    assert wait_until(lambda: scrape(server)[up] == 1, timeout=3)
    assert addresses(ask(server, "n4.health.test")) == ["192.0.2.50"]  # first again
    wait_for_log(server, "back in rotation")


# ------------------------------------------------------------------ privileges, config


def test_root_drops_to_nobody_after_binding(consuldns_server, fakes):
    need_code_readable_by_nobody()
    server = consuldns_server(upstreams=[fakes(fixed("192.0.2.4"))])
    user = subprocess.run(["ps", "-o", "user=", "-p", str(server.pid)], capture_output=True,
                          text=True, timeout=5, check=False).stdout.strip()
    assert user == "nobody"
    assert addresses(ask(server, "after-drop.test")) == ["192.0.2.4"]
    root = consuldns_server(upstreams=[fakes(fixed("192.0.2.4"))], user="root")
    assert subprocess.run(["ps", "-o", "user=", "-p", str(root.pid)], capture_output=True,
                          text=True, timeout=5, check=False).stdout.strip() == "root"


def big_over_tcp(query, transport):
    """TC over UDP, the answer over TCP: the upstream exchange goes over TCP too."""
    if transport == "udp":
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.TC
        return reply.to_wire()
    return answer_a(query, [f"192.0.2.{i}" for i in range(1, 60)], ttl=300)


def imports_after(log_text: str, marker: str) -> list[str]:
    """Modules imported after the log line containing marker (PYTHONPROFILEIMPORTTIME)."""
    after = log_text.split(marker, 1)[1]
    return [line.rsplit("|", 1)[1].strip() for line in after.splitlines()
            if line.startswith("import time:") and "|" in line]


def test_nothing_is_imported_after_dropping_root(consuldns_server, fakes, consul_double):
    """What the server loads after switching to nobody would fail when its files are not
    readable by nobody (a venv in /root, pyenv): an IDN name made /cache answer 500."""
    need_code_readable_by_nobody()
    fake = fakes(big_over_tcp)
    server = consuldns_server(upstreams=[fake], admin=True, extra_args=["--log-queries"],
                              env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert ask(server, "xn--9ca.example").rcode() == dns.rcode.NOERROR  # é.example
    assert ask(server, "big.example", tcp=True).rcode() == dns.rcode.NOERROR
    assert ask(server, "web.service.consul", "SRV").rcode() == dns.rcode.NOERROR
    status, body = http(server.admin_url + "/cache?name=%C3%A9.example&type=AAAA")
    assert status == 200 and json.loads(body)["name"] == "xn--9ca.example."
    cached = json.loads(http(server.admin_url + "/cache?name=%C3%A9.example")[1])
    assert cached["state"] == "fresh"
    assert http(server.admin_url + "/cache/flush?name=%C3%A9.example", "POST")[0] == 200
    for path in ("/metrics", "/health", "/ready", "/cache?name=x&type=BOGUS", "/nope"):
        assert http(server.admin_url + path)[0] in (200, 400, 404)
    server.send_signal(signal.SIGHUP)
    wait_for_log(server, "configuration reloaded")
    assert imports_after(server.log_text(), "dropped privileges to nobody") == []


def test_a_package_nobody_can_read_refuses_to_start(tmp_path, fakes):
    """consuldns run from a directory that `nobody` cannot read: it would fail at its first
    lazy import after the switch, so it does not start, and says what to do."""
    if os.geteuid() != 0:
        unavailable("needs root: run the suite as root (CI does)")
    private = tmp_path / "private"  # pytest's tmp dirs are 0700, owned by root
    shutil.copytree(REPO_ROOT / "consuldns", private / "consuldns")
    private.chmod(0o700)
    env = {**product_env(), "PYTHONPATH": str(private)}
    argv = [sys.executable, "-m", "consuldns", "serve", "--listen", f"127.0.0.1:{free_port()}",
            "--upstream", fakes(fixed("192.0.2.1")).address, "--admin", "off"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        _, stderr = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"started although nobody cannot read its package:\n{stderr}")
    assert proc.returncode == 1, stderr
    assert f"'nobody' cannot read {private / 'consuldns'}" in stderr
    assert "/opt/consuldns" in stderr and "server.user" in stderr


def test_example_config_checks_and_serves(consuldns_server, fakes):
    checked = run_cli("check-config", str(EXAMPLE))
    assert checked.returncode == 0 and checked.stdout.strip() == f"{EXAMPLE}: ok"
    broken = run_cli("check-config", "/nonexistent/consuldns.toml")
    assert broken.returncode == 1 and "/nonexistent/consuldns.toml: cannot read" in broken.stderr
    server = consuldns_server(upstreams=[fakes(fixed("192.0.2.5"))], config=EXAMPLE.read_text())
    assert addresses(ask(server, "example-config.test")) == ["192.0.2.5"]
    assert sorted(addresses(ask(server, "web.service.consul"))) == sorted(catalogs.WEB_HEALTHY)


# ------------------------------------------------------------------ query log


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_query_log_has_one_line_per_query(consuldns_server, fakes, log_format):
    fake = fakes(fixed("192.0.2.8", 300))
    server = consuldns_server(upstreams=[fake], extra_args=["--log-queries"],
                              config=f'[log]\nformat = "{log_format}"\n'
                                     '[acl]\nallow = ["127.0.0.1/32"]\n')
    ask(server, "logged.test")
    ask(server, "logged.test", tcp=True)
    ask_from(server, "127.0.0.2", "logged.test")
    ask(server, "web.service.consul", "AAAA")

    def query_lines() -> list[dict]:
        lines = [line for line in server.log_text().splitlines() if "consuldns.queries" in line]
        if log_format == "json":
            return [json.loads(line) for line in lines]
        return [dict(field.split("=", 1) for field in line.split(": ", 1)[1].split())
                for line in lines]

    assert wait_until(lambda: len([q for q in query_lines() if q["name"] != READY_QUESTION[0]]) == 4)
    lines = [q for q in query_lines() if q["name"] != READY_QUESTION[0]]
    miss, hit, refused, consul = lines
    assert (miss["client"].startswith("127.0.0.1:"), miss["name"], miss["type"],
            miss["route"], miss["cache"], miss["rcode"], str(miss["answers"])) == (
        True, "logged.test.", "A", ".", "miss", "NOERROR", "1")
    assert float(miss["ms"]) > 0
    assert (hit["cache"], hit["transport"], str(hit["answers"])) == ("hit", "tcp", "1")
    assert (refused["client"].startswith("127.0.0.2:"), refused["cache"],
            refused["rcode"]) == (True, "refused", "REFUSED")
    assert (consul["route"], consul["type"], consul["cache"]) == ("consul.", "AAAA", "miss")


def test_no_query_log_by_default(consuldns_server, fakes):
    server = consuldns_server(upstreams=[fakes(fixed("192.0.2.8"))])
    ask(server, "quiet.test")
    assert "consuldns.queries" not in server.log_text()


# ------------------------------------------------------------------ explain, cache flush


def test_query_explain_shows_route_cache_and_the_agent_side_by_side(consuldns_server,
                                                                    consul_double):
    server = consuldns_server(admin=True, config="[cache.consul]\nmin_ttl = 60\n")
    target = ["--server", server.address, "--admin", server.admin_address]
    first = run_cli("query", "web.service.consul", *target, "--explain")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert f";; route: zone consul. -> agent {consul_double.address}" in out
    assert ";; cache: miss before this query; fresh (NOERROR, TTL left" in out
    assert f"agent {consul_double.address}" in out.split(";; EXPLAIN")[1]
    assert "verdict: same answer from consuldns and the agent" in out

    consul_double.control.deregister_service("web-node1")  # 127.0.0.2 leaves Consul
    stale = run_cli("query", "web.service.consul", *target, "--explain")
    assert "verdict: consuldns answered from its cache (fresh" in stale.stdout
    explain = stale.stdout.split(";; EXPLAIN")[1]
    rows = [line for line in explain.splitlines() if "A 127.0.0.2" in line]
    assert len(rows) == 1 and rows[0].count("127.0.0.2") == 1  # only consuldns has it

    flushed = run_cli("cache", "flush", "web.service.consul", "--admin", server.admin_address)
    assert flushed.returncode == 0 and flushed.stdout.strip() == (
        "flushed 1 entry for web.service.consul.")
    after = run_cli("query", "web.service.consul", *target, "--explain", "--json")
    document = json.loads(after.stdout)
    assert document["explain"]["route"]["state"] == "miss"
    assert document["explain"]["cache_after"]["state"] == "fresh"
    assert "127.0.0.2" not in {a["data"] for a in document["reply"]["answer"]}
    assert document["explain"]["verdict"].startswith("same answer")


def test_explain_and_flush_without_an_admin_listener(consuldns_server, consul_double):
    server = consuldns_server()  # --admin off
    nowhere = f"127.0.0.1:{free_tcp_port()}"
    out = run_cli("query", "web.service.consul", "--server", server.address, "--explain",
                  "--admin", nowhere)
    assert out.returncode == 0
    assert f";; route: unknown (no admin listener at {nowhere}" in out.stdout
    flush = run_cli("cache", "flush", "--admin", nowhere)
    assert flush.returncode == 3 and "no admin listener" in flush.stderr
