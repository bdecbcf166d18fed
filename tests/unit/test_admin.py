"""Who the admin listener answers: no browser, no foreign Host (ops/admin.Gate)."""

from __future__ import annotations

import pytest

from consuldns.ops.admin import Gate, Request


def request(method: str = "GET", **headers: str) -> Request:
    return Request(method, "/metrics", {k.replace("_", "-"): v for k, v in headers.items()})


@pytest.mark.parametrize("host, port, accepted, refused", [
    ("127.0.0.1", 9153, ["127.0.0.1:9153", "localhost:9153", "LOCALHOST:9153", "[::1]:9153"],
     ["evil.example:9153", "127.0.0.1:9154", "localhost", "10.0.0.1:9153"]),
    ("::1", 9153, ["[::1]:9153", "localhost:9153"], ["::1", "evil.example:9153"]),
    ("10.0.0.5", 9153, ["10.0.0.5:9153"], ["localhost:9153", "127.0.0.1:9153", "x:9153"]),
    ("0.0.0.0", 9153, ["10.0.0.5:9153", "[2001:db8::1]:9153", "localhost:9153"],
     ["evil.example:9153", "10.0.0.5:80"]),
    ("::", 9153, ["[2001:db8::1]:9153", "[::1]:9153", "127.0.0.1:9153", "localhost:9153"],
     ["evil.example:9153", "[2001:db8::1]:80"]),
])
def test_the_host_must_name_the_listener(host, port, accepted, refused):
    gate = Gate(host, port)
    for value in accepted:
        assert gate.refusal(request(host=value)) is None, value
    for value in refused:
        assert "is not this listener's address" in gate.refusal(request(host=value)), value
    assert gate.refusal(request()) is None  # no Host at all: not a browser


def test_origin_and_simple_posts_are_refused_everywhere():
    for gate in (Gate("127.0.0.1", 9153), Gate()):
        assert "Origin" in gate.refusal(request(origin="null"))
        assert "X-Consuldns-Admin" in gate.refusal(request("POST"))
        assert gate.refusal(request("POST", x_consuldns_admin="1")) is None
    assert Gate().refusal(request(host="anything")) is None  # a worker's private socket


def test_only_the_listener_on_host_port_is_public():
    assert Gate("127.0.0.1", 9153).public and not Gate().public
