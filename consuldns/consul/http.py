"""The agent's HTTP API: where it is, how to reach it (TCP, TLS or a unix socket), with what
token, as Consul's own clients read it from the environment, and one GET.

Settings win over the environment, the environment over the defaults: `CONSUL_HTTP_ADDR`
(`host:port`, `http(s)://host:port` or `unix:///path`), `CONSUL_HTTP_TOKEN_FILE` (wins over
`CONSUL_HTTP_TOKEN`), `CONSUL_HTTP_SSL`, `CONSUL_HTTP_SSL_VERIFY`, `CONSUL_CACERT`,
`CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`. The
token goes in the `X-Consul-Token` header, never in a URL or a log line.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from consuldns import address
from consuldns.errors import ConsulDNSError

DEFAULT_ADDRESS = "127.0.0.1:8500"
OFF = "off"


class ApiError(ConsulDNSError):
    """The HTTP API gave no usable answer: a status other than 200, or no answer at all."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Endpoint:
    """Where the API is and how to talk to it; `token` is the secret itself."""

    base_url: str  # http://host:port, https://host:port, or http://consul for a socket
    unix_path: str = ""
    token: str = ""
    token_source: str = ""  # where the token came from, for the log (never the token)
    verify: bool | str = True  # False, True (system CAs) or a CA file
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    def describe(self) -> str:
        where = f"unix://{self.unix_path}" if self.unix_path else self.base_url
        token = f"with a token ({self.token_source})" if self.token else (
            "without a token (the agent's default token)")
        return f"{where} {token}"


def endpoint(http: str, token_file: str, tls: Mapping[str, Any],
             environ: Mapping[str, str] = os.environ) -> Endpoint | None:
    """The endpoint of the settings (consul.http and friends) over the environment; None
    when the HTTP API is turned off. ValueError names what is wrong."""
    text = http or environ.get("CONSUL_HTTP_ADDR", "") or DEFAULT_ADDRESS
    if text == OFF:
        return None
    token, source = _token(token_file, environ)
    secure = tls.get("ssl") or environ.get("CONSUL_HTTP_SSL", "").lower() in ("1", "true")
    base, unix_path = _base_url(text, secure)
    return Endpoint(
        base_url=base, unix_path=unix_path, token=token, token_source=source,
        verify=_verify(tls, environ),
        ca_path=tls.get("ca_path") or environ.get("CONSUL_CAPATH", ""),
        cert_file=tls.get("cert_file") or environ.get("CONSUL_CLIENT_CERT", ""),
        key_file=tls.get("key_file") or environ.get("CONSUL_CLIENT_KEY", ""),
        server_name=tls.get("server_name") or environ.get("CONSUL_TLS_SERVER_NAME", ""))


def _base_url(text: str, secure: bool) -> tuple[str, str]:
    if text.startswith("unix://"):
        path = text[len("unix://"):]
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: a unix socket needs an absolute path, "
                             "e.g. 'unix:///var/run/consul.sock'")
        return "http://consul", path
    scheme = "https" if secure else "http"
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme not in ("http", "https"):
            raise ValueError(f"{scheme}:// is not http://, https:// or unix://")
    host, port = address.parse(text.rstrip("/"), 8500)
    return f"{scheme}://{address.show(host, port)}", ""


def _token(token_file: str, environ: Mapping[str, str]) -> tuple[str, str]:
    path = token_file or environ.get("CONSUL_HTTP_TOKEN_FILE", "")
    if path:
        try:
            return Path(path).read_text().strip(), f"from {path}"
        except OSError as exc:
            raise ValueError(f"cannot read the token file {path}: {exc.strerror}") from None
    token = environ.get("CONSUL_HTTP_TOKEN", "")
    return token, "from CONSUL_HTTP_TOKEN" if token else ""


def _verify(tls: Mapping[str, Any], environ: Mapping[str, str]) -> bool | str:
    if tls.get("verify") is False or environ.get("CONSUL_HTTP_SSL_VERIFY", "").lower() in (
            "0", "false"):
        return False
    return tls.get("ca_file") or environ.get("CONSUL_CACERT", "") or True


def client(point: Endpoint, connections: int) -> httpx.AsyncClient:
    """An HTTP/1.1 client of the API: one connection per blocking query, `connections` at
    most, timeouts set per request."""
    transport = httpx.AsyncHTTPTransport(
        uds=point.unix_path or None, verify=_ssl_context(point),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))
    headers = {"X-Consul-Token": point.token} if point.token else {}
    return httpx.AsyncClient(base_url=point.base_url, transport=transport, headers=headers,
                             trust_env=False)


def _ssl_context(point: Endpoint) -> ssl.SSLContext | bool:
    if not point.base_url.startswith("https://"):
        # No TLS: no context either (loading the CA bundle costs the event loop ~50 ms).
        return False
    if point.verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        cafile = point.verify if isinstance(point.verify, str) else None
        context = ssl.create_default_context(cafile=cafile, capath=point.ca_path or None)
    if point.cert_file:
        context.load_cert_chain(point.cert_file, point.key_file or None)
    return context


def warm_up() -> None:
    """Load what httpx imports on its first request (httpcore's connection code, anyio's
    backend), by trying one against a closed loopback port: called before dropping root, as
    the user switched to may not be able to read the modules (ops/privileges.py)."""
    async def attempt() -> None:
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(verify=False)) as http:
            try:
                await http.get("http://127.0.0.1:9/", timeout=0.5)  # discard: nothing listens
            except httpx.HTTPError:
                pass

    asyncio.run(attempt())


async def get_json(http: httpx.AsyncClient, point: Endpoint, path: str,
                   params: Mapping[str, str], timeout: float) -> tuple[Any, httpx.Headers]:
    """GET path: the JSON body and the headers; ApiError for anything but 200 + JSON."""
    extensions = {"sni_hostname": point.server_name} if point.server_name else {}
    try:
        response = await http.get(path, params=params, timeout=timeout,
                                  extensions=extensions)
    except httpx.HTTPError as exc:
        raise ApiError(f"{type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        text = response.text.strip()
        raise ApiError(f"HTTP {response.status_code}: {text[:200]}", response.status_code,
                       text)
    try:
        return json.loads(response.content), response.headers
    except ValueError:
        raise ApiError("a body that is not JSON", 200) from None
