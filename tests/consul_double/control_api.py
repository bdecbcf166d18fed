"""The HTTP JSON control endpoint (server side): GET reads, POST /<operation> changes."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .config import ConfigError
from .state import DoubleState

Operation = Callable[[DoubleState, dict[str, Any]], Any]

OPERATIONS: dict[str, Operation] = {
    "set_catalog": lambda s, a: s.set_catalog(a["catalog"]),
    "register_node": lambda s, a: s.register_node(a["node"]),
    "deregister_node": lambda s, a: s.deregister_node(a["name"]),
    "register_service": lambda s, a: s.register_service(a["service"]),
    "deregister_service": lambda s, a: s.deregister_service(a["service_id"], a.get("node")),
    "update_node": lambda s, a: s.update_node(a["name"], a["fields"]),
    "update_service": lambda s, a: s.update_service(a["service_id"], a.get("node"), a["fields"]),
    "set_check": lambda s, a: s.set_check(a["status"], a.get("check_id"), a.get("service_id"),
                                          a.get("node"), a.get("output")),
    "set_maintenance": lambda s, a: s.set_maintenance(a.get("enable", True), a.get("node"),
                                                      a.get("service_id")),
    "set_config": lambda s, a: s.set_config(a["changes"]),
    "set_fault": lambda s, a: s.set_fault(a["kind"], float(a.get("delay", 0.0))),
    "clear_faults": lambda s, a: s.clear_faults(),
    "reset_counters": lambda s, a: s.reset_counters(),
    "set_http_config": lambda s, a: s.set_http_config(a["changes"]),
    "restore_snapshot": lambda s, a: s.restore_snapshot(a.get("index", 1)),
}

READS: dict[str, Callable[[DoubleState], Any]] = {
    "/health": lambda s: {"ok": True, "profile": s.profile},
    "/catalog": lambda s: s.catalog_dict(),
    "/counters": lambda s: s.counters(),
    "/faults": lambda s: s.faults_dict(),
    "/http_config": lambda s: s.http_config_dict(),
    "/http_counters": lambda s: s.http_stats.to_dict(),
}


def _handler_class(state: DoubleState) -> type[BaseHTTPRequestHandler]:
    class ControlHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests read results, not access logs

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            read = READS.get(self.path)
            if read is None:
                self._send(404, {"error": f"no such resource {self.path}"})
                return
            self._send(200, read(state))

        def do_POST(self) -> None:
            operation = OPERATIONS.get(self.path.lstrip("/"))
            length = int(self.headers.get("Content-Length", 0))
            try:
                args = json.loads(self.rfile.read(length) or b"{}")
                if operation is None:
                    raise ConfigError(f"no such operation {self.path}")
                operation(state, args)
            except (ConfigError, KeyError, TypeError, ValueError) as exc:
                self._send(400, {"error": f"{type(exc).__name__}: {exc}"})
                return
            self._send(200, {"ok": True})

    return ControlHandler


class _IPv6HTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class ControlServer:
    """The control endpoint, served from a daemon thread."""

    def __init__(self, state: DoubleState, host: str, port: int) -> None:
        server_class = _IPv6HTTPServer if ":" in host else ThreadingHTTPServer
        self.httpd = server_class((host, port), _handler_class(state))
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                        daemon=True, name="consul-double-control")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
