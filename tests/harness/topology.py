"""The whole topology inside one network namespace, for glibc clients that only talk to port 53:
unbound on 127.0.0.1:5353, the Consul double on 127.0.0.1:8600, consuldns on 127.0.0.1:53."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import catalogs
from tests.harness.consuldns import REPO_ROOT, ConsulDNS, start_consuldns
from tests.harness.netns import Netns
from tests.harness.procs import Proc, Server, StartupError, wait_for_dns
from tests.harness.upstream import start_unbound

UPSTREAM_PORT = 5353
DOUBLE_PORT = 8600


class InNetns:
    """Calls every method of `target` from a thread inside the namespace, so a client that
    opens a loopback connection per call (the double's DoubleControl) reaches the server
    that runs in there."""

    def __init__(self, target: Any, netns: Netns) -> None:
        self._target = target
        self._netns = netns

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._netns.call(attribute, *args, **kwargs)

        return call


class NetnsDouble(Server):
    """The Consul double running in a namespace; `.control` works from the test's thread."""

    def __init__(self, proc: Proc, host: str, port: int, workdir: Path, control: Any) -> None:
        super().__init__(proc, host, port, workdir)
        self.control = control


def start_double_in_netns(
    netns: Netns,
    workdir: Path,
    catalog: dict | None = None,
    profile: str = "modern",
    *,
    host: str = "127.0.0.1",
    port: int = DOUBLE_PORT,
    timeout: float = 15.0,
    **config: Any,
) -> NetnsDouble:
    """Start `python -m tests.consul_double` inside `netns` (config: dns_config keys)."""
    from tests.consul_double.control import DoubleControl  # written alongside; import late
    from tests.consul_double.process import merged_catalog

    workdir.mkdir(parents=True, exist_ok=True)
    catalog_path, port_file = workdir / "catalog.json", workdir / "ports"
    data = catalogs.default_catalog() if catalog is None else catalog
    catalog_path.write_text(json.dumps(merged_catalog(data, config)))
    argv = [
        sys.executable, "-m", "tests.consul_double", "--listen", f"{host}:{port}",
        "--catalog", str(catalog_path), "--profile", profile, "--control", f"{host}:0",
        "--port-file", str(port_file),
    ]
    proc = netns.start(argv, workdir / "double.log", name="consul-double", cwd=REPO_ROOT)
    control_port = _read_control_port(proc, port_file, time.monotonic() + timeout)
    netns.call(wait_for_dns, host, port, "consul.", "SOA", timeout=timeout, proc=proc)
    control = InNetns(DoubleControl(host, control_port), netns)
    return NetnsDouble(proc, host, port, workdir, control)


def _read_control_port(proc: Proc, port_file: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text().split()[1])
        if not proc.alive():
            break
        time.sleep(0.02)
    raise StartupError(f"the double reported no ports: {proc.describe()}")


@dataclass
class NetnsTopology:
    """What start_netns_topology started; all stopped by netns.delete()."""

    netns: Netns
    upstream: Server
    double: NetnsDouble
    consuldns: ConsulDNS

    def getent(self, name: str, database: str = "ahosts", **kwargs: Any) -> Any:
        return self.netns.getent(name, database, **kwargs)


def start_netns_topology(
    netns: Netns,
    workdir: Path,
    *,
    catalog: dict | None = None,
    profile: str = "modern",
    double_config: dict | None = None,
    config: str | None = None,
    extra_args: Sequence[str] = (),
) -> NetnsTopology:
    """unbound, the double and consuldns on 127.0.0.1:53, all inside `netns`."""
    upstream = start_unbound(workdir / "unbound", port=UPSTREAM_PORT, place=netns)
    double = start_double_in_netns(
        netns, workdir / "double", catalog, profile, **(double_config or {})
    )
    product = start_consuldns(
        workdir / "consuldns", consul=double, upstreams=[upstream], config=config,
        extra_args=extra_args, port=53, place=netns,
    )
    return NetnsTopology(netns, upstream, double, product)
