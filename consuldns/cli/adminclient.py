"""The CLI's side of the admin listener: cache lookup and flush over loopback HTTP."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlencode

from consuldns import address as hostport
from consuldns.errors import ConsulDNSError

TIMEOUT = 3.0
# ops/fleet.MUTATION_HEADER, spelled out so the CLI does not load the server's modules.
MUTATION_HEADER = "X-Consuldns-Admin"


class AdminUnreachable(ConsulDNSError):
    """No admin listener answered at the address given."""


def lookup(address: str, name: str, qtype: str, do: bool = False) -> dict:
    """GET /cache: the route and cache state of one question."""
    query = {"name": name, "type": qtype}
    if do:
        query["do"] = "1"
    return _call(address, "GET", "/cache?" + urlencode(query))


def flush(address: str, name: str | None = None) -> dict:
    """POST /cache/flush: drop one name's entries, or all."""
    path = "/cache/flush" + ("?" + urlencode({"name": name}) if name else "")
    return _call(address, "POST", path)


def _call(address: str, method: str, path: str) -> dict:
    host, port = hostport.parse(address)
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        # Mutations need this header: a browser cannot send it cross-site (ops/admin.py).
        connection.request(method, path, headers={MUTATION_HEADER: "1"})
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise AdminUnreachable(f"no admin listener at {address} ({exc}); start consuldns "
                               "with --admin HOST:PORT or pass the right --admin") from None
    finally:
        connection.close()
    try:
        document = json.loads(body)
    except ValueError:
        raise AdminUnreachable(f"{address} did not answer like a consuldns admin listener "
                               f"(HTTP {response.status})") from None
    if response.status == 400:
        raise ValueError(document.get("error", "bad request"))
    if response.status != 200:
        raise AdminUnreachable(f"{address}: HTTP {response.status}: "
                               f"{document.get('error', 'no reason given')}")
    return document
