"""Every setting takes effect on reload, or is declared restart-only.

The table below gives each setting a changed value. The test reloads a server (in process,
through the same Reloader that SIGHUP runs) from a base configuration to one where only that
setting differs, and checks that what the running objects do changed. A setting added to
ops/settings.py without a row here fails `test_the_table_covers_every_setting`; one that the
reload forgets to apply fails `test_a_changed_setting_changes_the_running_server`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import typing
from pathlib import Path

import pytest

from consuldns.ops import app, logs
from consuldns.ops.config import ConfigSource
from consuldns.ops.reload import RESTART_ONLY
from consuldns.ops.settings import Settings, ZoneSettings
from consuldns.serve.access import RateLimitedAccess
from tests.unit.fakes import run

ZONE = ZoneSettings(name="corp.example", servers=("192.0.2.7",))
TLS = Path(__file__).resolve().parents[1] / "data"

# One changed value per setting (dotted path); the base is `base_settings` below.
CHANGES: dict[str, object] = {
    "server.listen": ("127.0.0.1:0", "127.0.0.2:0"),
    "server.max_udp_size": 1400,
    "server.max_inflight": 10,
    "server.max_tcp_connections": 10,
    "server.tcp_idle_timeout": 3.0,
    "server.rate_limit": 100.0,
    "server.rate_burst": 7,
    "server.chaos": True,
    "consul.address": "127.0.0.1:8601",
    "consul.timeout": 1.0,
    "consul.domain": "discovery",
    "consul.alt_domain": "alt.example",
    "consul.transport": "tcp",
    "consul.udp_answer_limit": 5,
    "consul.edns_size": 1232,
    "consul.reverse_zones": ("10.in-addr.arpa",),
    "consul.http": "127.0.0.1:8501",
    "consul.watch": "off",
    "consul.token_file": "A_FILE",
    "consul.max_watches": 8,
    "consul.tls.ca_file": str(TLS / "consul-test.crt"),
    "consul.tls.ca_path": "/etc/ssl/certs",
    "consul.tls.cert_file": str(TLS / "consul-test-2.pem"),
    "consul.tls.key_file": str(TLS / "consul-test.key"),
    "consul.tls.server_name": "consul.example",
    "consul.tls.verify": False,
    "upstream.servers": ("192.0.2.9",),
    "upstream.resolv_conf": "OTHER_RESOLV_CONF",
    "upstream.timeout": 3.0,
    "upstream.policy": "random",
    "upstream.edns_size": 4096,
    "upstream.max_fails": 5,
    "upstream.health_interval": 1.0,
    "zones": (ZONE, ZoneSettings(name="dev.example", servers=("192.0.2.8",))),
    "cache.size": 500,
    "cache.max_bytes": 2 * 1024 * 1024,
    "cache.shuffle": False,
    "cache.shuffle_srv": False,
    "cache.prefetch": True,
    "cache.zones": {"corp.example": dataclasses.replace(Settings().cache.default, min_ttl=9)},
    "acl.allow": ("127.0.0.0/8",),
    "log.level": "debug",
    "log.queries": True,
    "log.format": "json",
    "admin.listen": "127.0.0.1:0",
}
for _table in ("consul", "default"):
    for _field in dataclasses.fields(Settings().cache.default):
        CHANGES[f"cache.{_table}.{_field.name}"] = _field.default + 1
IGNORED = {"source"}  # where the settings came from, not a setting


def setting_paths(cls: type = Settings, prefix: str = "") -> list[str]:
    """Every leaf setting, dotted (a table of tables is walked, a list or dict is a leaf)."""
    paths = []
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        dotted = prefix + item.name
        if dataclasses.is_dataclass(hints[item.name]):
            paths += setting_paths(hints[item.name], dotted + ".")
        elif dotted not in IGNORED:
            paths.append(dotted)
    return paths


def replaced(settings, dotted: str, value):
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(settings, **{head: value})
    return dataclasses.replace(settings, **{head: replaced(getattr(settings, head), rest, value)})


def base_settings(tmp_path: Path) -> Settings:
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    (tmp_path / "other.conf").write_text("nameserver 192.0.2.2\n")
    settings = Settings()
    for dotted, value in {"server.listen": ("127.0.0.1:0",), "server.rate_limit": 50.0,
                          "consul.http": "https://127.0.0.1:8501",
                          "consul.tls.cert_file": str(TLS / "consul-test.pem"),
                          "upstream.resolv_conf": str(tmp_path / "resolv.conf"),
                          "zones": (ZONE,), "admin.listen": "off"}.items():
        settings = replaced(settings, dotted, value)
    return settings


class FixedSource:
    """A config source that returns the settings the test gives it."""

    path = None

    def __init__(self, settings: Settings):
        self.settings = settings

    def load(self) -> Settings:
        return self.settings


def observe(server: app.Server) -> dict:
    """What the running objects do, read from them (not from the settings)."""
    runtime = server.runtime
    options = runtime.handler.options
    access = runtime.listeners.access
    acl = access.acl if isinstance(access, RateLimitedAccess) else access
    root = logging.getLogger()
    return {
        "options": dataclasses.replace(options, router=None, query_log=None),
        "query_log": options.query_log is not None,
        "routes": [(r.zone, r.is_agent, r.policy, r.timeout, r.group.signature(),
                    r.group.max_fails,
                    r.fallback.signature() if r.fallback else None)
                   for r in options.router.routes],
        "acl": [str(n) for n in acl.networks],
        "rate": (access.rate, access.burst) if access is not acl else None,
        "limits": runtime.listeners.tcp.limits,
        "health_interval": runtime.health.interval,
        "cache_size": (runtime.cache.size, runtime.cache.max_bytes),
        "log": (root.level, [type(h.formatter).__name__ for h in root.handlers]),
        "admin": server.admin_listen,
        "watch": runtime.watcher.settings,
        "listening": sorted(str(s.getsockname()[0]) for s in
                            (listener.sock for listener in runtime.listeners._udp)),
    }


def started(settings: Settings) -> app.Server:
    """A server set up as `consuldns serve` sets it up before serving (no sockets bound)."""
    server = app.Server(settings, FixedSource(settings))
    logs.configure(settings.log)
    run(server.apply_admin(settings))
    return server


def reload_to(server: app.Server, settings: Settings) -> tuple[bool, dict]:
    """Reload to settings; whether it was accepted, and what the server then does."""
    async def reload():
        server.reloader.source = FixedSource(settings)
        try:
            return await server.reloader.reload(), observe(server)
        finally:
            await server.admin.stop()
            await server.runtime.listeners.stop(0)

    return run(reload())


def test_the_table_covers_every_setting():
    missing = set(setting_paths()) - set(CHANGES) - set(RESTART_ONLY)
    assert not missing, f"add a changed value for {sorted(missing)} to CHANGES (or RESTART_ONLY)"
    assert not set(CHANGES) & set(RESTART_ONLY)


@pytest.mark.parametrize("dotted", sorted(CHANGES))
def test_a_changed_setting_changes_the_running_server(dotted, tmp_path):
    base = base_settings(tmp_path)
    value = CHANGES[dotted]
    if value == "OTHER_RESOLV_CONF":
        value = str(tmp_path / "other.conf")
    if value == "A_FILE":
        value = str(tmp_path / "resolv.conf")  # any readable file will do
    server = started(base)
    before = observe(server)
    accepted, after = reload_to(server, replaced(base, dotted, value))
    assert accepted and after != before, f"{dotted} changed but the running server did not"
    assert server.runtime.settings == replaced(base, dotted, value)


@pytest.mark.parametrize("dotted", RESTART_ONLY)
def test_restart_only_settings_are_kept_until_the_restart(dotted, tmp_path, capsys):
    base = base_settings(tmp_path)
    server = started(base)
    value = 2 if dotted == "server.workers" else "daemon"
    accepted, _ = reload_to(server, replaced(base, dotted, value))
    assert accepted and server.runtime.settings == base
    assert f"{dotted} changed" in capsys.readouterr().err


def test_a_bad_agent_address_in_the_environment_rejects_the_reload(tmp_path, monkeypatch,
                                                                   capsys):
    """Reported as check-config and serve report it, and nothing changes."""
    path = tmp_path / "consuldns.toml"
    path.write_text('[server]\nlisten = ["127.0.0.1:0"]\n[upstream]\nservers = ["192.0.2.9"]\n'
                    '[admin]\nlisten = "off"\n')
    source = ConfigSource(path)
    server = started(source.load())
    server.reloader.source = source
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "ftp://x")
    assert not run(server.reloader.reload())
    assert (f"reload rejected, still serving the previous configuration: {path}: consul.http "
            "(from $CONSUL_HTTP_ADDR): ftp:// is not http://") in capsys.readouterr().err
    assert server.runtime.stats.reloads["failure"] == 1


def test_a_listen_address_that_cannot_be_bound_rejects_the_reload(tmp_path, capsys):
    """The sockets of the addresses bound before the failure are closed again."""
    base = base_settings(tmp_path)
    server = started(base)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        busy = f"127.0.0.1:{holder.getsockname()[1]}"
        open_before = len(os.listdir("/proc/self/fd"))
        accepted, after = reload_to(server, replaced(base, "server.listen",
                                                     ("127.0.0.1:0", "127.0.0.2:0", busy)))
        assert len(os.listdir("/proc/self/fd")) == open_before
    assert not accepted and after["listening"] == []
    assert server.runtime.settings == base
    assert "reload rejected, still serving the previous configuration" in capsys.readouterr().err
