"""Network namespaces: an isolated loopback where servers can own 127.0.0.1:53, and glibc
clients (getent) that read a resolv.conf bind-mounted only in their own mount namespace."""

from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.harness.procs import Proc, kill_group, start

CLONE_NEWNET = 0x40000000
# Non-loopback addresses on lo: with AI_ADDRCONFIG, getaddrinfo asks for A/AAAA only when the
# host has an address of that family other than loopback.
EXTRA_ADDRESSES = ("192.0.2.1/32", "2001:db8::1/128")
DEFAULT_RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n"
DEFAULT_NSSWITCH = "hosts: dns\n"

_libc = ctypes.CDLL(None, use_errno=True)
_names = itertools.count()


class NetnsUnavailable(RuntimeError):
    """This machine cannot create a network namespace (not root, or no CAP_SYS_ADMIN)."""


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


class Netns:
    """One network namespace created by the test; delete() stops what runs in it."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.procs: list[Proc] = []
        self._files = itertools.count()

    @classmethod
    def create(cls, workdir: Path, name: str | None = None) -> Netns:
        """`ip netns add`, lo up, EXTRA_ADDRESSES on lo. Raises NetnsUnavailable."""
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        name = name or f"cdns-{os.getpid()}-{next(_names)}"
        added = _ip("netns", "add", name)
        if added.returncode != 0:
            raise NetnsUnavailable(f"ip netns add failed: {added.stderr.strip()}")
        netns = cls(name, workdir)
        try:
            netns._setup_lo()
        except Exception:
            netns.delete()
            raise
        return netns

    def _setup_lo(self) -> None:
        commands = [["ip", "link", "set", "lo", "up"]]
        commands += [["ip", "addr", "add", addr, "dev", "lo"] for addr in EXTRA_ADDRESSES]
        for argv in commands:
            self.run(argv, check=True)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: Sequence[str], *, timeout: float = 10.0, check: bool = False
    ) -> subprocess.CompletedProcess:
        """Run a command inside the namespace to completion (text output captured)."""
        return subprocess.run(
            self.wrap(argv), capture_output=True, text=True, timeout=timeout, check=check
        )

    def start(self, argv: Sequence[str], log_path: Path, **kwargs: Any) -> Proc:
        """Start a long-running process inside the namespace (stopped by delete())."""
        # `ip netns exec` execs the command, so the PID we keep is the server's own.
        proc = start(self.wrap(argv), log_path, name=kwargs.pop("name", None) or argv[0], **kwargs)
        self.procs.append(proc)
        return proc

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run fn(*args, **kwargs) in a thread that joined the namespace; return its result.

        Namespaces belong to threads, so sockets fn opens (dnspython queries, readiness polls)
        live in the namespace while the rest of the test process stays outside.
        """
        outcome: dict[str, Any] = {}

        def body() -> None:
            try:
                self._enter()
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                outcome["error"] = exc

        thread = threading.Thread(target=body, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _enter(self) -> None:
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns({self.name}): {os.strerror(errno)}")
        finally:
            os.close(fd)

    def resolver_files(
        self, resolv_conf: str = DEFAULT_RESOLV_CONF, nsswitch: str = DEFAULT_NSSWITCH
    ) -> tuple[Path, Path]:
        """Write a resolv.conf and an nsswitch.conf under workdir for one client run."""
        index = next(self._files)
        resolv = self.workdir / f"resolv.{index}.conf"
        switch = self.workdir / f"nsswitch.{index}.conf"
        resolv.write_text(resolv_conf)
        switch.write_text(nsswitch)
        return resolv, switch

    def run_with_resolver(
        self,
        argv: Sequence[str],
        *,
        resolv_conf: str = DEFAULT_RESOLV_CONF,
        nsswitch: str = DEFAULT_NSSWITCH,
        timeout: float = 20.0,
    ) -> subprocess.CompletedProcess:
        """Run a client inside the namespace seeing our resolv.conf and nsswitch.conf.

        The bind mounts happen in a private mount namespace (unshare -m), so the machine's
        /etc is never touched.
        """
        resolv, switch = self.resolver_files(resolv_conf, nsswitch)
        script = (
            f'mount --bind "{resolv}" /etc/resolv.conf && '
            f'mount --bind "{switch}" /etc/nsswitch.conf && exec "$@"'
        )
        inner = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]
        return self.run(inner, timeout=timeout)

    def getent(
        self,
        name: str,
        database: str = "ahosts",
        *,
        resolv_conf: str = DEFAULT_RESOLV_CONF,
        timeout: float = 20.0,
    ) -> subprocess.CompletedProcess:
        """`getent DATABASE NAME` inside the namespace through glibc's DNS resolver."""
        return self.run_with_resolver(
            ["getent", database, name], resolv_conf=resolv_conf, timeout=timeout
        )

    def delete(self) -> None:
        """Stop every process started here (by PID), then remove the namespace."""
        for proc in reversed(self.procs):
            proc.stop()
            kill_group(proc.proc)  # each runs in its own session: forked workers go too
        self.procs.clear()
        _ip("netns", "delete", self.name)


def parse_ahosts(stdout: str) -> dict[str, set[str]]:
    """getent ahosts output -> {address: {socktypes}} (e.g. {"10.0.0.1": {"STREAM", ...}})."""
    result: dict[str, set[str]] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            result.setdefault(fields[0], set()).add(fields[1])
    return result
