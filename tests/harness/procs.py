"""Background processes for the test topology: start, poll readiness, stop by PID."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import dns.message
import dns.rdataclass
import dns.rdatatype

from tests.harness.ports import free_port

LOG_TAIL_CHARS = 4000
_RESEND_INTERVAL = 0.1


class StartupError(RuntimeError):
    """A server did not become ready before its deadline (the message carries its log)."""


class Proc:
    """A started process: its PID, its Popen and the file its stdout and stderr go to."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, name: str) -> None:
        self.proc = proc
        self.log_path = log_path
        self.name = name

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return self.log_text()[-chars:]

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        """Send `sig`, wait up to `timeout`, then SIGKILL; return the exit code."""
        return stop_pid(self.proc, sig, timeout)

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid}>"

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited with {self.proc.returncode}"
        return f"{self.name} (pid {self.pid}, {state}); log {self.log_path}:\n{self.log_tail()}"


def start(
    argv: Sequence[str],
    log_path: Path,
    *,
    name: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
) -> Proc:
    """Start `argv` in the background with stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # A new session keeps terminal signals (Ctrl-C on pytest) from reaching the server
        # before its finalizer gets to stop it in order.
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return Proc(proc, log_path, name or Path(argv[0]).name)


def stop_pid(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
    """Stop one process we started, by its PID: `sig`, wait, then SIGKILL."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=timeout)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL whatever is left in the session we created for `proc` (e.g. forked workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for_dns(
    host: str,
    port: int,
    name: str = "readiness.invalid.",
    rdtype: str = "A",
    *,
    rdclass: str = "IN",
    timeout: float = 10.0,
    proc: Proc | None = None,
    tcp: bool = True,
) -> dns.message.Message:
    """Poll until the server at host:port answers a DNS query (any rcode); return that reply.

    One socket keeps re-sending fresh queries, so a reply that is slow because the server is
    still waiting on its own upstream still counts. With `tcp`, also wait until TCP accepts.
    Raises StartupError (with the process log when `proc` is given) at the deadline.
    """
    deadline = time.monotonic() + timeout
    question = (name, dns.rdatatype.from_text(rdtype), dns.rdataclass.from_text(rdclass))
    reply = _wait_udp(host, port, question, deadline, proc)
    if tcp:
        _wait_tcp(host, port, deadline, proc)
    return reply


def _wait_udp(
    host: str, port: int, question: tuple, deadline: float, proc: Proc | None
) -> dns.message.Message:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sent: set[int] = set()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        while time.monotonic() < deadline:
            _check_alive(proc, host, port)
            query = dns.message.make_query(*question)
            sent.add(query.id)
            _send_ignoring_refused(sock, query.to_wire())
            reply = _receive_reply(sock, sent, _RESEND_INTERVAL)
            if reply is not None:
                return reply
    raise StartupError(_not_ready(f"no DNS reply over UDP from {host}:{port}", proc))


def _send_ignoring_refused(sock: socket.socket, wire: bytes) -> None:
    try:
        sock.send(wire)
    except ConnectionRefusedError:
        pass  # ICMP port unreachable from an earlier probe: not listening yet


def _receive_reply(sock: socket.socket, ids: set[int], wait: float) -> dns.message.Message | None:
    end = time.monotonic() + wait
    while (left := end - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            return None
        try:
            data = sock.recv(65535)
        except ConnectionRefusedError:
            return None
        try:
            reply = dns.message.from_wire(data)
        except Exception:  # any garbage counts as "not ready yet", not as a crash
            continue
        if reply.id in ids:
            return reply
    return None


def _wait_tcp(host: str, port: int, deadline: float, proc: Proc | None) -> None:
    while time.monotonic() < deadline:
        _check_alive(proc, host, port)
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise StartupError(_not_ready(f"TCP {host}:{port} not accepting", proc))


def wait_for_tcp(host: str, port: int, *, timeout: float = 10.0, proc: Proc | None = None) -> None:
    """Poll until `host:port` accepts TCP connections (HTTP servers such as nginx)."""
    _wait_tcp(host, port, time.monotonic() + timeout, proc)


def _check_alive(proc: Proc | None, host: str, port: int) -> None:
    if proc is not None and not proc.alive():
        raise StartupError(_not_ready(f"exited before answering on {host}:{port}", proc))


def _not_ready(what: str, proc: Proc | None) -> str:
    if proc is None:
        return what
    return f"{what}: {proc.describe()}"


def is_bind_failure(proc: Proc) -> bool:
    """True when a server that died early says its address was taken (retry on a new port)."""
    text = proc.log_text().lower()
    return "address already in use" in text or "eaddrinuse" in text or "errno 98" in text


class Server:
    """A started network server: where it listens, its process, its work dir."""

    def __init__(self, proc: Proc, host: str, port: int, workdir: Path) -> None:
        self.proc_handle = proc
        self.host = host
        self.port = port
        self.workdir = workdir

    @property
    def address(self) -> str:
        """HOST:PORT as the consuldns CLI and config take it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc_handle.pid

    @property
    def proc(self) -> subprocess.Popen:
        return self.proc_handle.proc

    def alive(self) -> bool:
        return self.proc_handle.alive()

    def log_text(self) -> str:
        return self.proc_handle.log_text()

    def send_signal(self, sig: int) -> None:
        self.proc_handle.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        """Stop by PID (`sig`, then SIGKILL after `timeout`); return the exit code."""
        return self.proc_handle.stop(sig, timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.proc_handle.name} {self.address} pid={self.pid}>"


class Place(Protocol):
    """Where a server runs: the host's namespaces, or a network namespace (netns.Netns)."""

    def start(self, argv: Sequence[str], log_path: Path, **kwargs: Any) -> Proc: ...

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


class Host:
    """The machine's own network namespace."""

    def start(self, argv: Sequence[str], log_path: Path, **kwargs: Any) -> Proc:
        return start(argv, log_path, **kwargs)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


HOST = Host()
_BIND_RETRIES = 3


def launch(
    name: str,
    build_argv: Callable[[int], list[str]],
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    ready: Callable[[Proc, int], None],
    place: Place = HOST,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
) -> tuple[Proc, int]:
    """Start a server on `port` (or a free one, retried if taken meanwhile) and wait until ready.

    `build_argv(port)` makes the command line; `ready(proc, port)` raises StartupError unless
    the server answers; it runs inside `place` (a network namespace can only be reached there).
    """
    attempts = 1 if port else _BIND_RETRIES
    for attempt in range(1, attempts + 1):
        chosen = port or place.call(free_port, host)
        proc = place.start(build_argv(chosen), workdir / f"{name}.log", name=name, env=env, cwd=cwd)
        try:
            place.call(ready, proc, chosen)
            return proc, chosen
        except StartupError:
            proc.stop(signal.SIGKILL)
            kill_group(proc.proc)
            if attempt == attempts or not is_bind_failure(proc):
                raise
            proc.log_path.rename(proc.log_path.with_suffix(f".failed{attempt}.log"))
    raise AssertionError("unreachable")


def dns_ready(
    host: str, name: str, timeout: float, rdtype: str = "A", rdclass: str = "IN"
) -> Callable[[Proc, int], None]:
    """A `ready` callback for launch(): the server answers `name` over UDP and accepts TCP."""

    def ready(proc: Proc, port: int) -> None:
        wait_for_dns(host, port, name, rdtype, rdclass=rdclass, timeout=timeout, proc=proc)

    return ready


def live_children() -> dict[int, list[int]]:
    """Parent PID -> its child PIDs that are not zombies, as /proc shows them now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children
