"""`consuldns serve` as a subprocess, per the CLI contract in docs/design.md."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tests.harness.ports import format_address, free_tcp_port
from tests.harness.procs import (
    HOST,
    Place,
    Proc,
    Server,
    dns_ready,
    kill_group,
    launch,
    wait_for_tcp,
)
from tests.harness.tools import code_readable_by_nobody

REPO_ROOT = Path(__file__).resolve().parents[2]
# A CHAOS-class question: consuldns answers it itself (REFUSED: docs/design.md, "Bad and hostile input"), so readiness
# probes never reach the upstream or the agent and never show in their counters.
READY_QUESTION = ("readiness.invalid.", "TXT", "CH")


class HasAddress(Protocol):
    address: str


Address = str | HasAddress


class ConsulDNS(Server):
    """A running `consuldns serve`; `admin_address` is set when started with an admin port."""

    def __init__(
        self, proc: Proc, host: str, port: int, workdir: Path, admin_port: int | None
    ) -> None:
        super().__init__(proc, host, port, workdir)
        self.admin_port = admin_port

    @property
    def admin_address(self) -> str | None:
        if self.admin_port is None:
            return None
        return format_address(self.host, self.admin_port)

    @property
    def admin_url(self) -> str | None:
        if self.admin_port is None:
            return None
        return f"http://{self.admin_address}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        code = super().stop(sig, timeout)
        kill_group(self.proc)  # workers (--workers N) must not outlive the test
        return code


def address_of(item: Address) -> str:
    return item if isinstance(item, str) else item.address


def serve_argv(
    listen: str,
    consul: Address | None,
    upstreams: Sequence[Address],
    *,
    config_path: Path | None = None,
    admin: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The `consuldns serve` command line."""
    argv = [sys.executable, "-m", "consuldns", "serve"]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    argv += ["--listen", listen]
    if consul is not None:
        argv += ["--consul", address_of(consul)]
    for upstream in upstreams:
        argv += ["--upstream", address_of(upstream)]
    if admin is not None:
        argv += ["--admin", admin]
    return [*argv, *extra_args]


def default_user() -> str | None:
    """None (nobody, as the product chooses), or "root" when nobody cannot read the code."""
    return "root" if os.geteuid() == 0 and not code_readable_by_nobody() else None


def product_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the product: importable from the work tree, unbuffered logs, and
    neither CONSULDNS_CONFIG nor Consul's client variables (CONSUL_HTTP_ADDR, tokens, TLS)
    leaking in from the developer's shell. The watch of the agent's HTTP API is off unless a
    test turns it on (`--consul-http ADDRESS`, or CONSUL_HTTP_ADDR in `extra`): otherwise
    every server would try 127.0.0.1:8500, which is nobody's in a test."""
    env = {k: v for k, v in os.environ.items()
           if k != "CONSULDNS_CONFIG" and not k.startswith("CONSUL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["CONSUL_HTTP_ADDR"] = "off"
    env.update(extra or {})
    return env


def start_consuldns(
    workdir: Path,
    *,
    consul: Address | None,
    upstreams: Sequence[Address],
    config: str | None = None,
    extra_args: Sequence[str] = (),
    admin: bool = False,
    user: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    place: Place = HOST,
    timeout: float = 10.0,
    env: dict[str, str] | None = None,
    command_prefix: Sequence[str] = (),
) -> ConsulDNS:
    """Start `consuldns serve` and wait until it answers a DNS query (any rcode counts).

    `command_prefix` runs the server through another command, e.g. `prlimit --nofile=N --`.

    `config` is TOML text written to workdir/consuldns.toml and passed as --config.
    `user` is passed as --user; as root the product otherwise drops to nobody, which cannot
    read files under pytest's 0700 tmp dirs (e.g. re-reading the config on SIGHUP). When
    nobody cannot read the checkout itself (a clone in a 0700 home), the product would refuse
    to start as root without --user, so it is started with `--user root` (see
    tools.need_code_readable_by_nobody for the tests that need the switch).
    """
    if not upstreams and (config is None or "upstream" not in config):
        # Without upstreams the product falls back to /etc/resolv.conf: never in tests.
        raise ValueError("give consuldns at least one loopback upstream")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = _write_config(workdir, config)
    admin_port = place.call(free_tcp_port, host) if admin else None

    def build(chosen: int) -> list[str]:
        return [*command_prefix, *serve_argv(
            format_address(host, chosen),
            consul,
            upstreams,
            config_path=config_path,
            # Without an admin port asked for, none: parallel servers would fight over 9153.
            admin=format_address(host, admin_port) if admin_port else "off",
            extra_args=[*(["--user", switch_to] if switch_to else []), *extra_args],
        )]

    switch_to = user or default_user()
    ready = _ready(host, admin_port, timeout)
    proc, chosen = launch(
        "consuldns", build, workdir, host=host, port=port, ready=ready, place=place,
        env=product_env(env), cwd=workdir,
    )
    return ConsulDNS(proc, host, chosen, workdir, admin_port)


def _write_config(workdir: Path, config: str | None) -> Path | None:
    if config is None:
        return None
    path = workdir / "consuldns.toml"
    path.write_text(config)
    return path


def _ready(host: str, admin_port: int | None, timeout: float):
    name, rdtype, rdclass = READY_QUESTION
    dns_up = dns_ready(host, name, timeout, rdtype, rdclass)

    def ready(proc: Proc, port: int) -> None:
        dns_up(proc, port)
        if admin_port is not None:
            wait_for_tcp(host, admin_port, timeout=timeout, proc=proc)

    return ready
