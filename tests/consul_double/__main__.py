"""python -m tests.consul_double --listen 127.0.0.1:8600 --catalog catalog.json ..."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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
    parser.add_argument("--http", action="append", default=[], metavar="ADDRESS",
                        help="serve the agent HTTP API on HOST:PORT (port 0 = free) or "
                             "unix:///path; may be given twice (one of each)")
    parser.add_argument("--port-file", type=Path,
                        help="write 'DNS_PORT CONTROL_PORT HTTP_PORT' here once listening")
    parser.add_argument("--seed", type=int, help="seed for Consul's shuffle (reproducible runs)")
    return parser.parse_args(argv)


def parse_http(addresses: list[str]) -> tuple[tuple[str, int] | None, str | None]:
    """(TCP (host, port) or None, unix socket path or None) from --http values."""
    tcp, unix = None, None
    for address in addresses:
        if address.startswith("unix://"):
            if unix is not None or not address[len("unix://"):]:
                raise ValueError(f"--http {address}: one unix:///path at most")
            unix = address[len("unix://"):]
        elif tcp is None and re.search(r":\d+$", address):
            tcp = split_host_port(address)
        else:
            raise ValueError(f"--http {address}: give one HOST:PORT (and one unix:///path)")
    return tcp, unix


def _write_port_file(path: Path, app: DoubleApp) -> None:
    control_port = app.control.port if app.control else 0
    http_port = app.http.port if app.http and app.http.host is not None else 0
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{app.dns.port} {control_port} {http_port}\n")
    os.replace(temporary, path)  # atomic: a reader never sees half a line


def _describe(app: DoubleApp) -> str:
    http = app.http
    tcp = f" http {http.host}:{http.port}" if http and http.host is not None else ""
    unix = f" http unix://{http.unix_path}" if http and http.unix_path else ""
    control_port = app.control.port if app.control else None
    return (f"consul double ({app.state.profile}) on {app.dns.host}:{app.dns.port}"
            f" control {control_port}{tcp}{unix}")


async def _serve(app: DoubleApp, port_file: Path | None) -> None:
    await app.start()
    if port_file is not None:
        _write_port_file(port_file, app)
    print(_describe(app), flush=True)
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
        http_tcp, http_unix = parse_http(args.http)
    except (OSError, ValueError, ConfigError) as exc:
        print(f"consul double: {exc}", file=sys.stderr)
        return 2
    app = DoubleApp(state, host, port, control, args.seed, http_tcp, http_unix)
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
