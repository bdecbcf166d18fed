"""The watch's pure parts: which service a name is, what DNS can see of a service, and how
the HTTP API is reached (settings over the environment over the defaults)."""

from __future__ import annotations

import copy

import pytest

from consuldns.consul import view
from consuldns.consul.http import DEFAULT_ADDRESS, endpoint
from consuldns.consul.names import WatchKey, domain_labels, watch_key
from consuldns.dns import wire

DOMAINS = domain_labels((wire.text_to_name("consul"), wire.text_to_name("alt.example")))


@pytest.mark.parametrize("name,key", [
    ("web.service.consul", WatchKey("service", "web")),
    ("WEB.Service.CONSUL", WatchKey("service", "web")),
    ("v1.web.service.consul", WatchKey("service", "web")),
    ("a.b.web.service.consul", WatchKey("service", "web")),  # a tag with dots
    ("web.service.dc2.consul", WatchKey("service", "web", dc="dc2")),
    ("web.service.dc2.dc.consul", WatchKey("service", "web", dc="dc2")),
    ("web.service.p1.peer.consul", WatchKey("service", "web", peer="p1")),
    ("web.service.dc2.dc.p1.peer.consul", WatchKey("service", "web", "dc2", "p1")),
    ("_web._tcp.service.consul", WatchKey("service", "web")),
    ("_web._v1.service.consul", WatchKey("service", "web")),
    ("_web._tcp.consul", WatchKey("service", "web")),
    ("node.web.service.consul", WatchKey("service", "web")),  # the rightmost keyword wins
    ("api.connect.consul", WatchKey("connect", "api")),
    ("gw.ingress.consul", WatchKey("ingress", "gw")),
    ("web.service.alt.example", WatchKey("service", "web")),
    ("node1.node.consul", None),
    ("q.query.consul", None),
    ("7f000001.addr.consul", None),
    ("web.virtual.consul", None),
    ("web.service.ns1.ns.ap1.ap.dc1.dc.consul", None),  # Enterprise: not watched
    ("v1.api.connect.consul", None),  # connect names take no tag
    ("service.consul", None),
    ("consul", None),
    ("web.service.example.com", None),
])
def test_which_service_a_name_is(name, key):
    assert watch_key(wire.text_to_name(name), DOMAINS) == key


def test_a_watch_key_knows_its_endpoint_and_parameters():
    key = WatchKey("connect", "api", dc="dc2", peer="p1")
    assert key.path == "/v1/health/connect/api"
    assert key.params() == {"dc": "dc2", "peer": "p1"}


def instance(node: str, address: str, status: str = "passing", output: str = "ok") -> dict:
    return {"Node": {"Node": node, "Address": address, "TaggedAddresses": {}, "Meta": {}},
            "Service": {"ID": "web", "Service": "web", "Tags": ["v1"], "Address": "",
                        "Port": 8080, "Weights": {"Passing": 1, "Warning": 1}},
            "Checks": [{"Name": "http", "Status": status, "Output": output},
                       {"Name": "Serf Health Status", "Status": "passing", "Output": ""}]}


def test_the_digest_moves_with_what_dns_shows_and_not_with_check_output():
    entries = [instance("n1", "10.0.0.1"), instance("n2", "10.0.0.2")]
    base = view.digest(entries)
    reordered = list(reversed(entries))
    new_output = copy.deepcopy(entries)
    new_output[0]["Checks"][0]["Output"] = "HTTP GET: 200 in 3 ms"
    assert view.digest(reordered) == base and view.digest(new_output) == base
    for change in ("status", "address", "port", "tag", "weight", "gone"):
        changed = copy.deepcopy(entries)
        if change == "status":
            changed[0]["Checks"][0]["Status"] = "critical"
        elif change == "address":
            changed[0]["Service"]["Address"] = "10.0.9.9"
        elif change == "port":
            changed[0]["Service"]["Port"] = 9090
        elif change == "tag":
            changed[0]["Service"]["Tags"] = ["v2"]
        elif change == "weight":
            changed[0]["Service"]["Weights"] = {"Passing": 5, "Warning": 1}
        else:
            changed.pop()
        assert view.digest(changed) != base, change


def test_warning_and_critical_are_distinct_health_classes():
    warning = view.digest([instance("n1", "10.0.0.1", "warning")])
    critical = view.digest([instance("n1", "10.0.0.1", "critical")])
    assert len({warning, critical, view.digest([instance("n1", "10.0.0.1")])}) == 3


def test_the_summary_says_which_check_fails_and_why():
    long = "x" * 500
    summary = view.summary([instance("n1", "10.0.0.1"),
                            instance("n2", "10.0.0.2", "critical", long)])
    assert [item["health"] for item in summary] == ["passing", "critical"]
    failing = summary[1]["failing"]
    assert failing == [{"check": "http", "status": "critical", "output": "x" * 200}]


@pytest.mark.parametrize("http,environ,base,unix", [
    ("", {}, f"http://{DEFAULT_ADDRESS}", ""),
    ("", {"CONSUL_HTTP_ADDR": "10.0.0.5:8500"}, "http://10.0.0.5:8500", ""),
    ("127.0.0.1:9500", {"CONSUL_HTTP_ADDR": "10.0.0.5:8500"}, "http://127.0.0.1:9500", ""),
    ("", {"CONSUL_HTTP_ADDR": "https://127.0.0.1:8501"}, "https://127.0.0.1:8501", ""),
    ("127.0.0.1", {"CONSUL_HTTP_SSL": "true"}, "https://127.0.0.1:8500", ""),
    ("unix:///run/consul.sock", {}, "http://consul", "/run/consul.sock"),
    ("[::1]:8500", {}, "http://[::1]:8500", ""),
])
def test_where_the_http_api_is(http, environ, base, unix):
    point = endpoint(http, "", {}, environ)
    assert (point.base_url, point.unix_path) == (base, unix)


def test_off_turns_the_watch_off_even_from_the_environment():
    assert endpoint("off", "", {}, {}) is None
    assert endpoint("", "", {}, {"CONSUL_HTTP_ADDR": "off"}) is None


def test_the_token_file_wins_and_the_token_is_never_shown(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-from-file\n")
    environ = {"CONSUL_HTTP_TOKEN": "s3cret-from-env"}
    from_file = endpoint("", str(token_file), {}, environ)
    assert from_file.token == "s3cret-from-file"
    assert "s3cret" not in from_file.describe() and str(token_file) in from_file.describe()
    from_env_file = endpoint("", "", {}, {**environ, "CONSUL_HTTP_TOKEN_FILE": str(token_file)})
    assert from_env_file.token == "s3cret-from-file"
    assert endpoint("", "", {}, environ).token == "s3cret-from-env"
    assert "default token" in endpoint("", "", {}, {}).describe()


@pytest.mark.parametrize("http,message", [
    ("ftp://127.0.0.1:21", "is not http://"),
    ("unix://relative.sock", "absolute path"),
    ("consul.service:8500", "is not an IP address"),
])
def test_bad_http_addresses_say_what_to_write(http, message):
    with pytest.raises(ValueError, match=message):
        endpoint(http, "", {}, {})
