"""Mistakes a newcomer makes get messages that say what to do (issue 14), from a real
`consuldns serve` process: a port below 1024 without root, a port someone else holds, the
Docker health check, and `query --explain` on a TTL-0 Consul name."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.e2e.client import ask
from tests.e2e.fake_upstream import wait_until
from tests.harness.consuldns import product_env
from tests.harness.missing import unavailable
from tests.harness.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
NOBODY = "65534"
NEVER_ASKED = "127.0.0.1:9"  # validation needs an upstream; these servers never get to ask it


def consuldns(*args: str, prefix: tuple[str, ...] = (), env: dict | None = None,
              timeout: float = 20) -> subprocess.CompletedProcess:
    """Run the consuldns command to its end (a `serve` that starts serving times out)."""
    return subprocess.run([*prefix, sys.executable, "-m", "consuldns", *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=product_env(env), cwd=REPO_ROOT)


def serve_failing(*listen: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    flags = [item for address in listen for item in ("--listen", address)]
    return consuldns("serve", *flags, "--upstream", NEVER_ASKED, "--admin", "off",
                     prefix=prefix)


# ------------------------------------------------------------------ a port below 1024


def unprivileged() -> tuple[str, ...]:
    """A command prefix under which port 53 cannot be bound: as root, a user namespace that
    maps us to nobody (files stay readable wherever the checkout is); else nothing."""
    start_file = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    if start_file.exists() and int(start_file.read_text()) <= 53:
        unavailable("net.ipv4.ip_unprivileged_port_start <= 53: anyone may bind port 53 here")
    if os.geteuid() != 0:
        if _can_bind_53():
            unavailable("this user may bind port 53 (CAP_NET_BIND_SERVICE)")
        return ()
    prefix = (shutil.which("unshare") or "unshare", "--user", f"--map-user={NOBODY}",
              f"--map-group={NOBODY}")
    try:
        works = subprocess.run([*prefix, "true"], capture_output=True, timeout=10,
                               check=False).returncode == 0
    except FileNotFoundError:
        works = False
    if not works:
        unavailable("cannot create a user namespace (unshare --user, util-linux) to run as nobody")
    return prefix


def _can_bind_53() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", 53))
        except OSError:
            return False
    return True


def test_port_53_without_root_says_how_to_get_it():
    result = serve_failing("127.0.0.1:53", prefix=unprivileged())
    assert result.returncode == 1, result.stderr
    text = " ".join(result.stderr.split())
    assert "cannot bind 127.0.0.1:53 (udp): permission denied: port 53 is below 1024 and this " \
           "process is not root" in text, text
    assert "Start consuldns as root (it binds, then drops to user nobody" in text
    assert "under the systemd unit in config/consuldns.service (CAP_NET_BIND_SERVICE)" in text
    assert f"`setcap cap_net_bind_service+ep {os.path.realpath(sys.executable)}`" in text
    assert "or listen on a port >= 1024 (--listen 127.0.0.1:5353)" in text


# ------------------------------------------------------------------ a port in use


def held(kind: int, port: int = 0) -> socket.socket:
    """A socket holding 127.0.0.1:port as another resolver would (no SO_REUSEADDR)."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(1)
    return sock


def test_busy_udp_port_is_named_with_who_may_hold_it():
    free = f"127.0.0.1:{free_port()}"
    with held(socket.SOCK_DGRAM) as busy_socket:
        port = busy_socket.getsockname()[1]
        result = serve_failing(free, f"127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "cannot bind" in line]
    assert len(errors) == 1 and free not in errors[0], result.stderr
    assert f"cannot bind 127.0.0.1:{port} (udp): address already in use: another server holds " \
           f"port {port} on this address (dnsmasq, systemd-resolved on 127.0.0.53" in errors[0]
    assert f"`ss -lunp 'sport = :{port}'` shows which" in errors[0]


def test_busy_tcp_port_is_named_as_tcp():
    port = free_port()
    with held(socket.SOCK_STREAM, port):
        result = serve_failing(f"127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert f"cannot bind 127.0.0.1:{port} (tcp): address already in use" in result.stderr
    assert f"`ss -ltnp 'sport = :{port}'`" in result.stderr


# ------------------------------------------------------------------ Docker's health check


def healthcheck_command() -> str:
    """The shell command of the Dockerfile's HEALTHCHECK, and a check that the image sets the
    listen address only through CONSULDNS_LISTEN (which the health check reads)."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^\s+CONSULDNS_LISTEN=0\.0\.0\.0:53 \\$", text, re.MULTILINE)
    cmd = re.search(r'^CMD (\[.*\])$', text, re.MULTILINE)
    assert cmd and "--listen" not in json.loads(cmd.group(1)), "the CMD would override it"
    health = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$", text, re.MULTILINE)
    assert health, "no HEALTHCHECK CMD"
    argv = json.loads(health.group(1))
    assert argv[:2] == ["sh", "-c"]
    return argv[2]


def test_docker_healthcheck_asks_the_port_consuldns_listens_on(consuldns_server, tmp_path):
    command = healthcheck_command()
    server = consuldns_server()  # the health check asks 127.0.0.1, where the harness listens
    bin_dir = tmp_path / "bin"  # `consuldns` on PATH, as pip installs it in the image
    bin_dir.mkdir()
    (bin_dir / "consuldns").write_text(f"#!/bin/sh\nexec {sys.executable} -m consuldns \"$@\"\n")
    (bin_dir / "consuldns").chmod(0o755)
    env = product_env({"PATH": f"{bin_dir}:{os.environ['PATH']}"})

    def health(listen: str) -> int:
        return subprocess.run(["sh", "-c", command], env={**env, "CONSULDNS_LISTEN": listen},
                              cwd=REPO_ROOT, timeout=20, check=False).returncode

    assert health(f"0.0.0.0:{server.port}") == 0
    assert health(f"127.0.0.1:{server.port}") == 0
    assert health(f"0.0.0.0:{free_port()}") != 0  # nothing there: unhealthy


# ------------------------------------------------------------------ explain, TTL 0


def cache_state(server, name: str) -> dict:
    with urllib.request.urlopen(f"{server.admin_url}/cache?name={name}&type=A",
                                timeout=5) as response:
        return json.loads(response.read())


def test_explain_on_a_ttl0_consul_name_says_it_is_expected(consuldns_server, consul_double):
    server = consuldns_server(admin=True, extra_args=["--consul-http", "off"])
    target = ["--server", server.address, "--admin", server.admin_address]
    first = consuldns("query", "web.service.consul", *target, "--explain")
    assert first.returncode == 0, first.stderr
    cache_line = next(line for line in first.stdout.splitlines() if line.startswith(";; cache:"))
    assert cache_line == (";; cache: miss before this query; not kept (TTL 0: consuldns asks "
                          "the agent for every query, as expected; [cache.consul] min_ttl or "
                          "the watch keep answers longer) after")
    assert ";; watch: off (consul.http)" in first.stdout
    again = consuldns("query", "web.service.consul", *target, "--explain")
    assert ";; cache: not kept (TTL 0" in again.stdout and "stale" not in again.stdout
    assert "answered from its cache" not in again.stdout


def test_explain_shows_a_ttl0_answer_the_watch_pinned(consuldns_server, consul_double):
    server = consuldns_server(admin=True,
                              extra_args=["--consul-http", consul_double.http_address])
    # The watch starts with the first query and pins answers fetched once it has settled.
    assert wait_until(lambda: ask(server, "web.service.consul") is not None
                      and cache_state(server, "web.service.consul").get("pinned"), timeout=10)
    explained = consuldns("query", "web.service.consul", "--server", server.address,
                          "--admin", server.admin_address, "--explain")
    assert explained.returncode == 0, explained.stderr
    assert re.search(r";; cache: fresh \(NOERROR, TTL 0 but pinned by the watch: [\d.]+ s left "
                     r"of 300\) before this query", explained.stdout), explained.stdout
    assert re.search(r";; watch: service \S+ watching, 1 answer pinned", explained.stdout), \
        explained.stdout
