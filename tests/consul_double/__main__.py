"""python -m tests.consul_double --listen 127.0.0.1:8600 --catalog catalog.json ..."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from .app import DoubleApp, new_event_loop
from .config import PROFILES, ConfigError
from .recursor import split_host_port
from .state import DoubleState


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.consul_double",
                                     description="A Consul agent DNS double for tests.")
    parser.add_argument("--listen", default="127.0.0.1:8600",
                        help="HOST:PORT for UDP and TCP; port 0 picks a free one")
    parser.add_argument("--catalog", type=Path, help="catalog JSON (nodes, services, config)")
    parser.add_argument("--profile", choices=PROFILES, default="modern")
    parser.add_argument("--control", help="HOST:PORT of the HTTP control endpoint (0 = free)")
    parser.add_argument("--port-file", type=Path,
                        help="write 'DNS_PORT CONTROL_PORT' here once listening")
    parser.add_argument("--seed", type=int, help="seed for Consul's shuffle (reproducible runs)")
    return parser.parse_args(argv)


def _write_port_file(path: Path, dns_port: int, control_port: int | None) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{dns_port} {control_port or 0}\n")
    os.replace(temporary, path)  # atomic: a reader never sees half a line


async def _serve(app: DoubleApp, port_file: Path | None) -> None:
    await app.start()
    control_port = app.control.port if app.control else None
    if port_file is not None:
        _write_port_file(port_file, app.dns.port, control_port)
    print(f"consul double ({app.state.profile}) on {app.dns.host}:{app.dns.port}"
          f" control {control_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await app.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data = json.loads(args.catalog.read_text()) if args.catalog else {}
        state = DoubleState.from_dict(data, args.profile)
        host, port = split_host_port(args.listen)
        control = split_host_port(args.control) if args.control else None
    except (OSError, ValueError, ConfigError) as exc:
        print(f"consul double: {exc}", file=sys.stderr)
        return 2
    app = DoubleApp(state, host, port, control, args.seed)
    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve(app, args.port_file))
    except OSError as exc:
        print(f"consul double: cannot listen: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
