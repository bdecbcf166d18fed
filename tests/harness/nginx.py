"""nginx from apt as a DNS client of consuldns, and tiny HTTP backends on 127.0.0.x."""

from __future__ import annotations

import http.client
import http.server
import os
import re
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.harness.ports import free_tcp_port
from tests.harness.procs import HOST, Place, Proc, Server, launch, wait_for_tcp
from tests.harness.upstream import require_binary

NGINX = "/usr/sbin/nginx"
UPSTREAM_RESOLVE_SINCE = (1, 27, 3)  # `server NAME resolve;` in open-source nginx
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_version() -> tuple[int, ...]:
    """The installed nginx version, e.g. (1, 22, 1)."""
    require_binary(NGINX, "nginx-light")
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=10)
    match = re.search(r"nginx/(\d+(?:\.\d+)*)", out.stderr + out.stdout)
    if match is None:
        raise RuntimeError(f"cannot parse nginx -v: {out.stderr!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def supports_upstream_resolve() -> bool:
    return nginx_version() >= UPSTREAM_RESOLVE_SINCE


@dataclass(frozen=True)
class NginxSettings:
    """What the generated nginx.conf says; defaults are the proxy-host setup of docs/design.md."""

    resolver: str  # HOST:PORT of consuldns
    name: str = "web.service.consul"
    backend_port: int = 8080
    valid: str = "1s"
    ipv6: bool = False
    resolver_timeout: str = "5s"
    upstream_resolve: bool = False  # `upstream { server NAME resolve; }` instead of a variable
    proxy_connect_timeout: str = "2s"
    extra_http: str = ""
    extra_location: str = ""


def foreground_lines(workdir: Path) -> str:
    """Main-context lines that run nginx in the foreground with its pid file in `workdir`."""
    # As root, workers would run as nobody and could not use temp paths in a 0700 tmp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"{user}daemon off;\npid {workdir / 'nginx.pid'};\n"


def temp_path_lines(workdir: Path) -> str:
    """http-context lines putting nginx's temp dirs under `workdir` (the default is /var/lib)."""
    return "".join(f"    {kind}_temp_path {workdir / kind};\n" for kind in _TEMP_DIRS)


def nginx_config(workdir: Path, host: str, port: int, settings: NginxSettings) -> str:
    """nginx.conf with every path under `workdir`."""
    ipv6 = "on" if settings.ipv6 else "off"
    temps = temp_path_lines(workdir)
    return f"""{foreground_lines(workdir)}master_process on;
worker_processes 1;
error_log {workdir / "error.log"} info;
events {{ worker_connections 512; }}
http {{
    log_format upstreams '$remote_addr "$request" $status upstream=$upstream_addr '
                         'upstream_status=$upstream_status rt=$request_time';
    access_log {workdir / "access.log"} upstreams;
{temps}    resolver {settings.resolver} valid={settings.valid} ipv6={ipv6};
    resolver_timeout {settings.resolver_timeout};
{_upstream_block(settings)}{settings.extra_http}
    server {{
        listen {host}:{port};
        location / {{
            proxy_connect_timeout {settings.proxy_connect_timeout};
            add_header X-Upstream $upstream_addr always;
{_proxy_lines(settings)}{settings.extra_location}
        }}
    }}
}}
"""


def _upstream_block(settings: NginxSettings) -> str:
    if not settings.upstream_resolve:
        return ""
    return (
        "    upstream backend {\n"
        "        zone backend 64k;\n"
        f"        server {settings.name}:{settings.backend_port} resolve;\n"
        "    }\n"
    )


def _proxy_lines(settings: NginxSettings) -> str:
    if settings.upstream_resolve:
        return "            proxy_pass http://backend;\n"
    # A variable makes nginx resolve at request time through `resolver` (not once at start).
    return (
        f"            set $backend {settings.name};\n"
        f"            proxy_pass http://$backend:{settings.backend_port};\n"
    )


class Nginx(Server):
    """A running nginx; `get()` sends one request through it."""

    @property
    def url(self) -> str:
        return f"http://{self.address}/"

    def get(self, path: str = "/", timeout: float = 10.0) -> tuple[int, str, dict[str, str]]:
        """GET through nginx: (status, body, headers). http.client ignores *_proxy env vars."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            return response.status, body, {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()

    def error_log(self) -> str:
        return _read(self.workdir / "error.log")

    def access_log(self) -> str:
        return _read(self.workdir / "access.log")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def start_nginx(
    workdir: Path,
    settings: NginxSettings,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    place: Place = HOST,
    timeout: float = 10.0,
) -> Nginx:
    """Start nginx in the foreground with a temp prefix; wait until it accepts connections."""
    if settings.upstream_resolve and not supports_upstream_resolve():
        raise RuntimeError(f"nginx {nginx_version()} lacks `server ... resolve` (needs 1.27.3)")
    return start_nginx_with(
        workdir, lambda chosen: nginx_config(workdir, host, chosen, settings),
        host=host, port=port, place=place, timeout=timeout,
    )


def start_nginx_with(
    workdir: Path,
    render: Callable[[int], str],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    place: Place = HOST,
    timeout: float = 10.0,
) -> Nginx:
    """Start nginx on the config `render(port)` returns (see foreground_lines and
    temp_path_lines); wait until it accepts connections on host:port."""
    require_binary(NGINX, "nginx-light")
    workdir.mkdir(parents=True, exist_ok=True)
    for kind in _TEMP_DIRS:
        (workdir / kind).mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"

    def build(chosen: int) -> list[str]:
        conf.write_text(render(chosen))
        return [NGINX, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]

    def ready(proc: Proc, chosen: int) -> None:
        wait_for_tcp(host, chosen, timeout=timeout, proc=proc)

    proc, chosen = launch("nginx", build, workdir, host=host, port=port, ready=ready, place=place)
    return Nginx(proc, host, chosen, workdir)


class Backends:
    """HTTP servers on 127.0.0.N:port, one per address; each answers with its own address."""

    def __init__(self, addresses: list[str], port: int) -> None:
        self.addresses = addresses
        self.port = port
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._servers: list[http.server.ThreadingHTTPServer] = []

    def record(self, address: str) -> None:
        with self._lock:
            self.hits[address] += 1

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()

    def serve(self) -> None:
        for address in self.addresses:
            server = http.server.ThreadingHTTPServer((address, self.port), _handler(self, address))
            server.daemon_threads = True
            self._servers.append(server)
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()


def _handler(pool: Backends, address: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            pool.record(address)
            body = address.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def start_backends(count: int = 4, first: int = 2, port: int | None = None) -> Backends:
    """Backends on 127.0.0.{first}..{first+count-1}, all on one port (free on each address)."""
    addresses = [f"127.0.0.{first + i}" for i in range(count)]
    for _ in range(1 if port else 5):
        pool = Backends(addresses, port or free_tcp_port(addresses[0]))
        try:
            pool.serve()
            return pool
        except OSError:
            pool.stop()
            if port:
                raise
    raise RuntimeError(f"no common free port on {addresses}")
