"""Composition: state + handler + DNS listeners + HTTP API + control endpoint, in a loop or a
thread."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Mapping
from typing import Any, Self

from .control import DoubleControl
from .control_api import ControlServer
from .handler import Handler
from .http_server import HttpServer
from .server import DnsServer
from .state import DoubleState


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed: the double must not be the bottleneck under dnsperf."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def host_port(host: str, port: int) -> str:
    """HOST:PORT, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def set_http_attributes(handle: Any, host: str | None, port: int | None,
                        unix: str | None) -> None:
    """The HTTP API's address on a double's handle, in the forms clients take.

    http_address is what CONSUL_HTTP_ADDR would hold: HOST:PORT, else unix:///path.
    """
    tcp = host is not None and port
    handle.http_host = host if tcp else None
    handle.http_port = port if tcp else None
    handle.http_unix = unix
    handle.http_url = f"http://{host_port(host, port)}" if tcp else None
    handle.http_address = host_port(host, port) if tcp else (f"unix://{unix}" if unix else None)


class DoubleApp:
    """One running double: DNS on host:port (UDP+TCP), control on control_host:control_port,
    the HTTP API on http_tcp (HOST, PORT) and/or the unix socket http_unix when given."""

    def __init__(self, state: DoubleState, host: str, port: int,
                 control: tuple[str, int] | None, seed: int | None = None,
                 http_tcp: tuple[str, int] | None = None, http_unix: str | None = None) -> None:
        self.state = state
        self.dns = DnsServer(Handler(state, random.Random(seed)), host, port)
        self.control_address = control
        self.control: ControlServer | None = None
        self.http: HttpServer | None = None
        if http_tcp is not None or http_unix is not None:
            tcp_host, tcp_port = http_tcp if http_tcp is not None else (None, 0)
            self.http = HttpServer(state, tcp_host, tcp_port, http_unix)

    async def start(self) -> None:
        await self.dns.start()
        if self.http is not None:
            await self.http.start()
        if self.control_address is not None:
            self.control = ControlServer(self.state, *self.control_address)
            self.control.start()

    async def stop(self) -> None:
        if self.control is not None:
            self.control.stop()
        if self.http is not None:
            await self.http.stop()
        self.state.close()
        await self.dns.stop()


class ThreadedDouble:
    """A double on its own event loop in a daemon thread of this process (pid is None)."""

    pid = None

    def __init__(self, catalog: Mapping[str, Any] | None = None, profile: str = "modern",
                 host: str = "127.0.0.1", port: int = 0, seed: int | None = None,
                 http_port: int | None = 0, http_unix: str | None = None,
                 **config: Any) -> None:
        data = dict(catalog or {})
        data["config"] = {**data.get("config", {}), **config}
        self.state = DoubleState.from_dict(data, profile)
        self.profile = profile
        self.host = host
        http_tcp = None if http_port is None else (host, http_port)
        self.app = DoubleApp(self.state, host, port, (host, 0), seed, http_tcp, http_unix)
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="consul-double")
        self._started = threading.Event()
        self._error: OSError | ValueError | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.app.start())
        except (OSError, ValueError) as exc:  # reported to the starting thread
            self._error = exc
            self._loop.close()
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.app.stop())
        self._loop.close()

    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("consul double thread did not start")
        if self._error is not None:
            raise self._error
        self.port = self.app.dns.port
        self.address = host_port(self.host, self.port)
        http = self.app.http
        set_http_attributes(self, http and http.host, http and http.port, http and http.unix_path)
        assert self.app.control is not None
        self.control = DoubleControl(self.app.control.host, self.app.control.port)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
