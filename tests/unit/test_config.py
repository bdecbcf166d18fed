"""Config loading and validation, CoreDNS setup_test style: TOML snippet -> field or error."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consuldns.cli.main import app
from consuldns.dns import wire
from consuldns.errors import ConfigError
from consuldns.ops import build, config, validate
from consuldns.ops import settings as known

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "consuldns.toml"
ZONE = '[[zones]]\nname = "corp.example"\nservers = ["10.0.0.53"]\n'

# (id, TOML text, dotted field path, expected value)
VALID = [
    ("empty-file-defaults", "", "server.listen", ("127.0.0.1:53",)),
    ("ipv6-listen", '[server]\nlisten = ["[::1]:5353", "127.0.0.1:5353"]', "server.listen",
     ("[::1]:5353", "127.0.0.1:5353")),
    ("int-for-float", "[upstream]\ntimeout = 3", "upstream.timeout", 3.0),
    ("rate-limit", "[server]\nrate_limit = 50\nrate_burst = 100", "server.rate_limit", 50.0),
    ("policy", '[upstream]\npolicy = "round_robin"', "upstream.policy", "round_robin"),
    ("upstream-port", '[upstream]\nservers = ["127.0.0.1:5300", "::1"]', "upstream.servers",
     ("127.0.0.1:5300", "::1")),
    ("health-interval", "[upstream]\nhealth_interval = 1", "upstream.health_interval", 1.0),
    ("alt-domain", '[consul]\nalt_domain = "consul.example"', "consul.alt_domain",
     "consul.example"),
    ("reverse-zones", '[consul]\nreverse_zones = ["10.in-addr.arpa"]', "consul.reverse_zones",
     ("10.in-addr.arpa",)),
    ("zone", ZONE, "zones.0.servers", ("10.0.0.53",)),
    ("zone-policy", ZONE + 'policy = "random"', "zones.0.policy", "random"),
    ("consul-cache", "[cache.consul]\nmin_ttl = 5", "cache.consul.min_ttl", 5),
    ("zone-cache", ZONE + '[cache.zones."corp.example"]\nmin_ttl = 30',
     "cache.zones.corp.example.min_ttl", 30),
    ("cache-off", "[cache]\nsize = 0", "cache.size", 0),
    ("cache-bytes", "[cache]\nmax_bytes = 1048576", "cache.max_bytes", 1048576),
    ("log-json", '[log]\nformat = "json"\nqueries = true', "log.format", "json"),
    ("admin-off", '[admin]\nlisten = "off"', "admin.listen", "off"),
    ("acl", '[acl]\nallow = ["127.0.0.1/32"]', "acl.allow", ("127.0.0.1/32",)),
    ("user-root", '[server]\nuser = "root"', "server.user", "root"),
    ("admin-same-port-other-family",
     '[server]\nlisten = ["0.0.0.0:5353"]\n[admin]\nlisten = "[::1]:5353"', "admin.listen",
     "[::1]:5353"),
]

# (id, TOML text, substring of the error)
INVALID = [
    ("not-toml", "[server\nlisten = 1", "not valid TOML"),
    ("unknown-section", "[cach]\nsize = 1", "cach: unknown key; did you mean 'cache'?"),
    ("unknown-key", "[server]\nlisen = []", "server.lisen: unknown key; did you mean 'listen'?"),
    ("unknown-zone-key", ZONE + 'server = "x"',
     "zones[0].server: unknown key; did you mean 'servers'?"),
    ("unknown-far-key", "[server]\nzzz = 1", "server.zzz: unknown key; known keys: chaos"),
    ("listen-not-list", '[server]\nlisten = "127.0.0.1:53"',
     "server.listen: expected a list, got a string"),
    ("listen-no-port", '[server]\nlisten = ["127.0.0.1"]',
     "server.listen[0]: '127.0.0.1' has no port: add one, e.g. '127.0.0.1:53'"),
    ("listen-name", '[server]\nlisten = ["localhost:5354"]',
     "server.listen[0]: 'localhost:5354': 'localhost' is not an IP address (names are not "
     "resolved here: write the address, e.g. '127.0.0.1:5354')"),
    ("listen-v6-no-brackets", '[server]\nlisten = ["::1"]',
     "server.listen[0]: '::1' has no port: add one, e.g. '[::1]:53'"),
    ("listen-empty", "[server]\nlisten = []", "server.listen: needs at least one address"),
    ("listen-twice", '[server]\nlisten = ["127.0.0.1:53", "127.0.0.1:53"]',
     "server.listen: lists the same address twice"),
    ("listen-twice-spelled-apart", '[server]\nlisten = ["127.0.0.1:5353", "127.0.0.1:05353"]',
     "server.listen: lists the same address twice ('127.0.0.1:5353' and '127.0.0.1:05353')"),
    ("listen-twice-v6", '[server]\nlisten = ["[::1]:5353", "[0:0::1]:5353"]',
     "server.listen: lists the same address twice ('[::1]:5353' and '[0:0::1]:5353')"),
    ("timeout-string", '[consul]\ntimeout = "2s"',
     "consul.timeout: expected a number, got a string ('2s')"),
    ("timeout-moved", "[server]\ntimeout = 2.0",
     "server.timeout: no longer exists; the deadline is now per route: set upstream.timeout"),
    ("timeout-range", "[upstream]\ntimeout = 60", "upstream.timeout: must be between 0.1 and 30"),
    ("workers-bool", "[server]\nworkers = true",
     "server.workers: expected an integer, got a boolean"),
    ("workers-range", "[server]\nworkers = 0", "server.workers: must be between 1 and 64"),
    ("no-such-user", '[server]\nuser = "no-such-user-here"', "server.user: no user"),
    ("negative-rate", "[server]\nrate_limit = -1", "server.rate_limit: must be 0 (off)"),
    ("udp-size", "[server]\nmax_udp_size = 100", "server.max_udp_size: must be between 512"),
    ("agent-address", '[consul]\naddress = "consul:8600"',
     "consul.address: 'consul:8600': 'consul' is not an IP address"),
    ("transport", '[consul]\ntransport = "quic"',
     "consul.transport: must be one of auto, udp, tcp"),
    ("reverse-zone", '[consul]\nreverse_zones = ["10.0.0.0/8"]',
     "consul.reverse_zones[0]: '10.0.0.0/8' is not a reverse zone"),
    ("policy", '[upstream]\npolicy = "fastest"',
     "upstream.policy: must be one of sequential, random, round_robin"),
    ("upstream-name", '[upstream]\nservers = ["dns.google"]',
     "upstream.servers[0]: 'dns.google' is not an IP address (names are not resolved"),
    ("upstream-is-us", '[server]\nlisten = ["127.0.0.1:5354"]\n'
     '[upstream]\nservers = ["127.0.0.1:5354"]',
     "upstream.servers[0]: '127.0.0.1:5354' is consuldns itself (server.listen "
     "'127.0.0.1:5354'): queries sent there would loop back"),
    ("upstream-under-wildcard", '[server]\nlisten = ["0.0.0.0:53"]\n'
     '[upstream]\nservers = ["10.0.0.1", "127.0.0.53"]',
     "upstream.servers[1]: '127.0.0.53' is consuldns itself (server.listen '0.0.0.0:53')"),
    ("upstream-under-v6-wildcard", '[server]\nlisten = ["[::]:5354"]\n'
     '[upstream]\nservers = ["[::1]:5354"]',
     "upstream.servers[0]: '[::1]:5354' is consuldns itself (server.listen '[::]:5354')"),
    ("zone-server-is-us", '[server]\nlisten = ["127.0.0.1:5354"]\n[[zones]]\n'
     'name = "corp.example"\nservers = ["10.0.0.53", "127.0.0.1:5354"]',
     "zones[0].servers[1]: '127.0.0.1:5354' is consuldns itself"),
    ("agent-is-us", '[server]\nlisten = ["127.0.0.1:8600"]',
     "consul.address: '127.0.0.1:8600' is consuldns itself"),
    ("health-interval", "[upstream]\nhealth_interval = 0",
     "upstream.health_interval: must be between 0.05 and 60"),
    ("zone-without-servers", '[[zones]]\nname = "corp.example"',
     "zones[0].servers: needs at least one server"),
    ("zone-is-consul", '[[zones]]\nname = "consul."\nservers = ["10.0.0.1"]',
     "zones[0].name: 'consul.' already goes to the Consul agent"),
    ("zone-twice", ZONE + ZONE.replace("corp.example", "CORP.example."),
     "zones[1].name: 'CORP.example.' is listed twice"),
    ("zone-cache-without-zone", '[cache.zones."corp.example"]\nmin_ttl = 1',
     "cache.zones.\"corp.example\": no [[zones]] entry named 'corp.example'"),
    ("zone-cache-for-consul", '[cache.zones."consul"]\nmin_ttl = 1',
     "(the Consul domain's cache is [cache.consul])"),
    ("zone-cache-twice",
     ZONE + '[cache.zones."corp.example"]\nmin_ttl = 1\n[cache.zones."Corp.Example."]',
     'cache.zones."Corp.Example.": names the same zone as cache.zones."corp.example"'),
    ("min-above-max", "[cache.consul]\nmin_ttl = 10\nmax_ttl = 5",
     "cache.consul.min_ttl: is above max_ttl (10 > 5)"),
    ("servfail-ttl", "[cache.default]\nservfail_ttl = 900",
     "cache.default.servfail_ttl: at most 300 seconds"),
    ("negative-ttl", "[cache.default]\nstale_ttl = -1",
     "cache.default.stale_ttl: must not be negative"),
    ("cache-bytes-too-small", "[cache]\nmax_bytes = 1000",
     "cache.max_bytes: must be at least 1048576 (1 MiB); the default is 67108864 (64 MiB). To "
     "turn the cache off set cache.size = 0"),
    ("acl-network", '[acl]\nallow = ["10.0.0.0/33"]',
     "acl.allow[0]: '10.0.0.0/33' is not a network"),
    ("log-level", '[log]\nlevel = "verbose"', "log.level: must be one of debug, info"),
    ("log-format", '[log]\nformat = "xml"', "log.format: must be one of text, json"),
    ("admin-no-port", '[admin]\nlisten = "localhost"',
     "admin.listen: 'localhost' has no port and is not an IP address (names are not "
     "resolved here): write e.g. '127.0.0.1:53'; or 'off' to disable the admin listener"),
    ("admin-is-dns", '[server]\nlisten = ["127.0.0.1:9153"]',
     "admin.listen: '127.0.0.1:9153' is also a DNS listen address"),
    ("admin-is-dns-spelled-apart", '[server]\nlisten = ["127.0.0.1:09153"]',
     "admin.listen: '127.0.0.1:9153' is also a DNS listen address"),
    ("admin-under-dns-wildcard",
     '[server]\nlisten = ["0.0.0.0:5353"]\n[admin]\nlisten = "127.0.0.1:5353"',
     "admin.listen: '127.0.0.1:5353' and the DNS listen address '0.0.0.0:5353' take the same"),
    ("admin-wildcard-over-dns",
     '[server]\nlisten = ["[::1]:5353"]\n[admin]\nlisten = "[::]:5353"',
     "admin.listen: '[::]:5353' and the DNS listen address '[::1]:5353' take the same port"),
]


def load_text(tmp_path: Path, text: str) -> known.Settings:
    path = tmp_path / "consuldns.toml"
    path.write_text(text)
    return config.load(path)


def field(settings: known.Settings, dotted: str):
    value = settings
    parts = dotted.split(".")
    while parts:
        part = parts.pop(0)
        if isinstance(value, dict):
            key = ".".join([part, *parts])  # zone names contain dots: the rest minus the field
            key, last = key.rsplit(".", 1)
            return value[key].__getattribute__(last)
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


@pytest.mark.parametrize("text,dotted,expected", [case[1:] for case in VALID],
                         ids=[case[0] for case in VALID])
def test_valid_snippets(tmp_path, text, dotted, expected):
    assert field(load_text(tmp_path, text), dotted) == expected


@pytest.mark.parametrize("text,message", [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_snippets(tmp_path, text, message):
    with pytest.raises(ConfigError) as raised:
        load_text(tmp_path, text)
    lines = str(raised.value).splitlines()
    assert any(message in line for line in lines), lines
    assert all(line.startswith(str(tmp_path / "consuldns.toml") + ": ") for line in lines)


@pytest.mark.parametrize("zone,key", [("corp.example", "Corp.Example."),
                                      ("Corp.Example.", "corp.example"),
                                      ("corp.example.", "CORP.EXAMPLE")])
def test_a_zone_cache_key_applies_however_it_is_written(tmp_path, zone, key):
    text = (f'[upstream]\nservers = ["192.0.2.1"]\n[[zones]]\nname = "{zone}"\n'
            f'servers = ["10.0.0.53"]\n[cache.zones."{key}"]\nmin_ttl = 30\n')
    route = build.build_router(load_text(tmp_path, text)).route(
        wire.text_to_name("www.corp.example"))
    assert route.zone == "corp.example." and route.policy.min_ttl == 30


def test_no_tls_file_no_tls_context(monkeypatch):
    """Without a CA or client certificate file nothing is loaded (the system CA bundle
    costs ~16 ms a validation, twice a reload)."""
    def refuse(*args, **kwargs):
        raise AssertionError("an SSL context was created")

    monkeypatch.setattr(validate.ssl, "create_default_context", refuse)
    assert validate.problems_of(known.Settings()) == []


def test_every_problem_is_reported_at_once(tmp_path):
    text = '[server]\nlisen = []\n[consul]\ntimeout = "x"\n[upstream]\npolicy = "fastest"\n'
    with pytest.raises(ConfigError) as raised:
        load_text(tmp_path, text)
    lines = str(raised.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["server.lisen", "consul.timeout",
                                                      "upstream.policy"]


def test_example_config_documents_every_key_with_its_default():
    loaded = config.load(EXAMPLE)
    assert dataclasses.replace(loaded, source="<defaults>") == known.Settings()
    text = EXAMPLE.read_text()
    for cls in (known.ServerSettings, known.ConsulSettings, known.UpstreamSettings,
                known.ZoneSettings, known.ZoneCacheSettings, known.CacheSettings,
                known.AclSettings, known.LogSettings, known.AdminSettings):
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[item.name]) or item.name == "zones":
                continue  # tables: their keys are checked through their own class
            assert re.search(rf"^#? ?{item.name} = ", text, re.MULTILINE), f"{cls.__name__}.{item.name}"


def test_check_config_command():
    runner = CliRunner()
    ok = runner.invoke(app, ["check-config", str(EXAMPLE)])
    assert ok.exit_code == 0 and ok.output.strip() == f"{EXAMPLE}: ok"


def test_check_config_command_reports_problems(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nlisen = []\n[upstream]\nservers = ["dns.google"]\n')
    bad = CliRunner().invoke(app, ["check-config", str(path)])
    assert bad.exit_code == 1
    assert f"{path}: server.lisen: unknown key; did you mean 'listen'?" in bad.output


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "consuldns.toml"
    path.write_text('[server]\nlisten = ["127.0.0.1:5300"]\n[upstream]\nservers = ["10.0.0.1"]\n')
    source = config.ConfigSource(path, {"upstream": ["127.0.0.1:5301"], "admin": "off",
                                        "log_queries": True})
    settings = source.load()
    assert settings.server.listen == ("127.0.0.1:5300",)
    assert settings.upstream.servers == ("127.0.0.1:5301",)
    assert settings.admin.listen == "off" and settings.log.queries
    path.write_text('[server]\nlisten = ["127.0.0.1:5302"]\n')
    assert source.load().server.listen == ("127.0.0.1:5302",)  # re-read, flags re-applied
    assert source.load().upstream.servers == ("127.0.0.1:5301",)


def test_bad_flag_is_reported_against_the_command_line():
    with pytest.raises(ConfigError, match="command line: admin.listen"):
        config.with_overrides(known.Settings(), admin="nowhere")


def test_config_path_comes_from_the_flag_then_the_environment(monkeypatch, tmp_path):
    from consuldns.cli.main import _config_path

    monkeypatch.setenv("CONSULDNS_CONFIG", "relative/consuldns.toml")
    assert _config_path(None) == Path.cwd() / "relative" / "consuldns.toml"  # absolute: reloads
    assert _config_path(tmp_path / "flag.toml") == tmp_path / "flag.toml"
    monkeypatch.delenv("CONSULDNS_CONFIG")
    assert _config_path(None) is None
