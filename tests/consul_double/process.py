"""Start the double as a subprocess (tests, benchmarks) or in a thread, and stop it by PID."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from .app import ThreadedDouble, host_port, set_http_attributes
from .control import DoubleControl

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE = struct.pack("!6H", 0xD0B1, 0, 1, 0, 0, 0) + b"\x06consul\x00\x00\x06\x00\x01"


class DoubleStartError(RuntimeError):
    """The double exited or did not answer before the deadline; carries its log."""


def answers_dns(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if something answers a UDP query (consul. SOA) on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(PROBE, (host, port))
            return sock.recv(65535)[:2] == PROBE[:2]
        except OSError:
            return False


def merged_catalog(catalog: Mapping[str, Any] | None, config: Mapping[str, Any]) -> dict:
    data = dict(catalog or {})
    data["config"] = {**data.get("config", {}), **config}
    return data


class DoubleProcess:
    """A double running as `python -m tests.consul_double`; stop() terminates its PID.

    HTTP API: http_address (HOST:PORT, else unix:///path), http_url, http_host,
    http_port, http_unix (None when not served).
    """

    def __init__(self, proc: subprocess.Popen, workdir: Path, host: str, port: int,
                 control_port: int, profile: str, http_port: int | None = None,
                 http_unix: str | None = None) -> None:
        self.proc = proc
        self.workdir = workdir
        self.host = host
        self.port = port
        self.address = host_port(host, port)
        self.pid = proc.pid
        self.profile = profile
        self.control = DoubleControl(host, control_port)
        self.log_path = workdir / "double.log"
        set_http_attributes(self, host, http_port, http_unix)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this PID only
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_for_ports(proc: subprocess.Popen, port_file: Path, log: Path,
                    deadline: float) -> tuple[int, int, int]:
    """(DNS, control, HTTP) ports from the port file; HTTP 0 means no TCP listener."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DoubleStartError(f"double exited with {proc.returncode}:\n{log.read_text()}")
        if port_file.exists():
            dns_port, control_port, http_port = (int(p) for p in port_file.read_text().split())
            return dns_port, control_port, http_port
        time.sleep(0.01)
    raise DoubleStartError(f"double did not report its ports:\n{log.read_text()}")


def _wait_for_dns(proc: subprocess.Popen, host: str, port: int, log: Path,
                  deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DoubleStartError(f"double exited with {proc.returncode}:\n{log.read_text()}")
        if answers_dns(host, port):
            return
    raise DoubleStartError(f"double did not answer DNS on {host}:{port}:\n{log.read_text()}")


def _http_args(host: str, http_port: int | None, http_unix: str | Path | None) -> list[str]:
    args = [] if http_port is None else ["--http", host_port(host, http_port)]
    return args + ([] if http_unix is None else ["--http", f"unix://{http_unix}"])


def start_double(catalog: Mapping[str, Any] | None = None, profile: str = "modern", *,
                 host: str = "127.0.0.1", port: int = 0, seed: int | None = None,
                 http_port: int | None = 0, http_unix: str | Path | None = None,
                 startup_timeout: float = 15.0, **config: Any) -> DoubleProcess:
    """Start a double subprocess and wait until it answers DNS.

    config holds dns_config keys (node_ttl="10s", only_passing=True, recursors=[...])
    merged over catalog["config"]; agent HTTP settings go in catalog["http"]. port 0
    lets the double bind UDP and TCP to one free port itself (it retries on
    EADDRINUSE) and report it through a port file, so no port is ever picked here and
    lost to a race. The HTTP API listens on host:http_port (0: a free port, None: no
    TCP listener) and on the unix socket http_unix when given.
    """
    workdir = Path(tempfile.mkdtemp(prefix="consul-double-"))
    catalog_path, port_file = workdir / "catalog.json", workdir / "ports"
    log = workdir / "double.log"
    catalog_path.write_text(json.dumps(merged_catalog(catalog, config)))
    command = [sys.executable, "-m", "tests.consul_double", "--listen", host_port(host, port),
               "--catalog", str(catalog_path), "--profile", profile,
               "--control", host_port(host, 0), "--port-file", str(port_file)]
    command += _http_args(host, http_port, http_unix)
    if seed is not None:
        command += ["--seed", str(seed)]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + startup_timeout
        dns_port, control_port, http_tcp = _wait_for_ports(proc, port_file, log, deadline)
        _wait_for_dns(proc, host, dns_port, log, deadline)
    except BaseException:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    unix = None if http_unix is None else str(http_unix)
    return DoubleProcess(proc, workdir, host, dns_port, control_port, profile, http_tcp or None,
                         unix)


def start_in_thread(catalog: Mapping[str, Any] | None = None, profile: str = "modern", *,
                    host: str = "127.0.0.1", port: int = 0, seed: int | None = None,
                    http_port: int | None = 0, http_unix: str | Path | None = None,
                    **config: Any) -> ThreadedDouble:
    """The same double inside this process (faster to start; shares the GIL with the test)."""
    unix = None if http_unix is None else str(http_unix)
    return ThreadedDouble(catalog, profile, host, port, seed, http_port, unix, **config).start()
