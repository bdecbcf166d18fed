"""Configuration: TOML (tomllib) -> frozen dataclasses, with defaults and validation.

Opens no sockets. Every problem is reported as `FILE: KEY: what is wrong; what to do`, and
all problems of a file are reported at once. CLI flags override the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from consuldns.acl import DEFAULT_ALLOW
from consuldns.errors import ConfigError

POLICIES = ("sequential", "random", "round_robin")
AGENT_TRANSPORTS = ("auto", "udp", "tcp")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class ServerSettings:
    listen: tuple[str, ...] = ("127.0.0.1:53",)
    workers: int = 1
    user: str = ""
    timeout: float = 2.0
    max_udp_size: int = 1232
    max_inflight: int = 1000
    max_tcp_connections: int = 200
    tcp_idle_timeout: float = 10.0
    chaos: bool = False


@dataclass(frozen=True)
class ConsulSettings:
    address: str = "127.0.0.1:8600"
    domain: str = "consul"
    alt_domain: str = ""
    transport: str = "auto"
    udp_answer_limit: int = 3
    edns_size: int = 4096
    reverse_zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpstreamSettings:
    servers: tuple[str, ...] = ()
    resolv_conf: str = "/etc/resolv.conf"
    policy: str = "sequential"
    edns_size: int = 1232
    max_fails: int = 3


@dataclass(frozen=True)
class ZoneSettings:
    name: str = ""
    servers: tuple[str, ...] = ()
    policy: str = "sequential"


@dataclass(frozen=True)
class ZoneCacheSettings:
    min_ttl: int = 0
    max_ttl: int = 86400
    neg_min_ttl: int = 0
    neg_max_ttl: int = 3600
    servfail_ttl: int = 2
    stale_window: int = 3600
    stale_ttl: int = 30


@dataclass(frozen=True)
class CacheSettings:
    size: int = 100000
    shuffle: bool = True
    shuffle_srv: bool = True
    prefetch: bool = False
    consul: ZoneCacheSettings = ZoneCacheSettings()
    default: ZoneCacheSettings = ZoneCacheSettings()
    zones: dict[str, ZoneCacheSettings] = field(default_factory=dict)


@dataclass(frozen=True)
class AclSettings:
    allow: tuple[str, ...] = DEFAULT_ALLOW


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    queries: bool = False
    format: str = "text"


@dataclass(frozen=True)
class AdminSettings:
    listen: str = "127.0.0.1:9153"


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = ServerSettings()
    consul: ConsulSettings = ConsulSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    zones: tuple[ZoneSettings, ...] = ()
    cache: CacheSettings = CacheSettings()
    acl: AclSettings = AclSettings()
    log: LogSettings = LogSettings()
    admin: AdminSettings = AdminSettings()
    source: str = "<defaults>"


# ---------------------------------------------------------------- loading


def load(path: str | Path) -> Settings:
    """Read and validate a TOML file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    problems: list[str] = []
    settings = _build(Settings, raw, "", str(path), problems)
    settings = dataclasses.replace(settings, source=str(path))
    if not problems:
        problems.extend(validate(settings))
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


def _build(cls: type, table: dict, prefix: str, source: str, problems: list[str]):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    values = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            problems.append(f"{source}: {dotted}: unknown key{_did_you_mean(key, known)}")
            continue
        converted = _convert(hints[key], value, dotted, source, problems)
        if converted is not _INVALID:
            values[key] = converted
    return cls(**values)


_INVALID = object()


def _convert(hint, value, dotted: str, source: str, problems: list[str]):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            problems.append(f"{source}: {dotted}: expected a table [{dotted}]")
            return _INVALID
        return _build(hint, value, dotted + ".", source, problems)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            problems.append(f"{source}: {dotted}: expected a list, got {_kind(value)}")
            return _INVALID
        items = [_convert(item, v, f"{dotted}[{i}]", source, problems)
                 for i, v in enumerate(value)]
        return _INVALID if _INVALID in items else tuple(items)
    if origin is dict:
        item = typing.get_args(hint)[1]
        if not isinstance(value, dict):
            problems.append(f"{source}: {dotted}: expected a table")
            return _INVALID
        return {k: _convert(item, v, f"{dotted}.{k}", source, problems) for k, v in value.items()}
    return _scalar(hint, value, dotted, source, problems)


def _scalar(hint, value, dotted: str, source: str, problems: list[str]):
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        problems.append(f"{source}: {dotted}: expected {_TYPE_NAMES[hint]}, got {_kind(value)}"
                        f" ({value!r})")
        return _INVALID
    return value


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _kind(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _did_you_mean(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"


# ---------------------------------------------------------------- validation


def validate(settings: Settings) -> list[str]:
    """Semantic checks that types alone do not catch."""
    from consuldns.listener import parse_listen
    from consuldns.upstream import parse_server

    src = settings.source
    problems = []

    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            problems.append(f"{src}: {key}: {message}")

    def check_parse(parser, text: str, key: str, expected: str) -> None:
        try:
            parser(text)
        except (ValueError, OSError):
            problems.append(f"{src}: {key}: {text!r} is not {expected}")

    server = settings.server
    check(bool(server.listen), "server.listen", "needs at least one address like '127.0.0.1:53'")
    for i, text in enumerate(server.listen):
        check_parse(parse_listen, text, f"server.listen[{i}]", "HOST:PORT (IPv6 as '[::1]:53')")
    check(1 <= server.workers <= 64, "server.workers", "must be between 1 and 64")
    check(server.timeout > 0, "server.timeout", "must be a positive number of seconds")
    check(512 <= server.max_udp_size <= 65535, "server.max_udp_size",
          "must be between 512 and 65535 (1232 avoids IP fragmentation)")
    check(server.max_inflight > 0, "server.max_inflight", "must be positive")
    check(server.max_tcp_connections > 0, "server.max_tcp_connections", "must be positive")
    check(server.tcp_idle_timeout > 0, "server.tcp_idle_timeout", "must be positive")
    consul = settings.consul
    check_parse(lambda t: parse_server(t, 8600), consul.address, "consul.address",
                "HOST:PORT of the agent's DNS interface, e.g. '127.0.0.1:8600'")
    check(_is_domain(consul.domain), "consul.domain", "must be a domain name such as 'consul'")
    check(not consul.alt_domain or _is_domain(consul.alt_domain), "consul.alt_domain",
          "must be a domain name or empty")
    check(consul.transport in AGENT_TRANSPORTS, "consul.transport",
          f"must be one of {', '.join(AGENT_TRANSPORTS)}")
    check(1 <= consul.udp_answer_limit <= 8, "consul.udp_answer_limit",
          "must match the agent's dns_config.udp_answer_limit (1 to 8, default 3)")
    check(512 <= consul.edns_size <= 65535, "consul.edns_size", "must be between 512 and 65535")
    for i, zone in enumerate(consul.reverse_zones):
        check(_is_domain(zone) and zone.rstrip(".").lower().endswith(".arpa"),
              f"consul.reverse_zones[{i}]", f"{zone!r} is not a reverse zone like "
              "'10.in-addr.arpa'")
    upstream = settings.upstream
    for i, text in enumerate(upstream.servers):
        check_parse(parse_server, text, f"upstream.servers[{i}]", "an address like '192.0.2.53' "
                    "or '127.0.0.1:5353'")
    check(upstream.policy in POLICIES, "upstream.policy", f"must be one of {', '.join(POLICIES)}")
    check(512 <= upstream.edns_size <= 65535, "upstream.edns_size", "must be 512 to 65535")
    check(upstream.max_fails >= 1, "upstream.max_fails", "must be at least 1")
    for i, zone in enumerate(settings.zones):
        key = f"zones[{i}]"
        check(_is_domain(zone.name), f"{key}.name", "must be a domain name")
        check(bool(zone.servers), f"{key}.servers", "needs at least one server")
        for j, text in enumerate(zone.servers):
            check_parse(parse_server, text, f"{key}.servers[{j}]", "an address like '10.0.0.53'")
        check(zone.policy in POLICIES, f"{key}.policy", f"must be one of {', '.join(POLICIES)}")
    check(settings.cache.size >= 0, "cache.size", "must be 0 (off) or a number of entries")
    zone_caches = {"cache.consul": settings.cache.consul, "cache.default": settings.cache.default}
    zone_caches.update({f"cache.zones.{k}": v for k, v in settings.cache.zones.items()})
    for key, zc in zone_caches.items():
        problems.extend(_check_zone_cache(src, key, zc))
    for i, net in enumerate(settings.acl.allow):
        check_parse(lambda t: ipaddress.ip_network(t, strict=False), net, f"acl.allow[{i}]",
                    "a network like '10.0.0.0/8'")
    check(settings.log.level in LOG_LEVELS, "log.level", f"must be one of {', '.join(LOG_LEVELS)}")
    check(settings.log.format in LOG_FORMATS, "log.format",
          f"must be one of {', '.join(LOG_FORMATS)}")
    if settings.admin.listen not in ("", "off"):
        check_parse(parse_listen, settings.admin.listen, "admin.listen",
                    "HOST:PORT, or 'off' to disable the admin listener")
    return problems


def _check_zone_cache(src: str, key: str, zc: ZoneCacheSettings) -> list[str]:
    problems = []
    for name in ("min_ttl", "max_ttl", "neg_min_ttl", "neg_max_ttl", "servfail_ttl",
                 "stale_window", "stale_ttl"):
        if getattr(zc, name) < 0:
            problems.append(f"{src}: {key}.{name}: must not be negative")
    if zc.min_ttl > zc.max_ttl:
        problems.append(f"{src}: {key}.min_ttl: is above max_ttl ({zc.min_ttl} > {zc.max_ttl})")
    if zc.neg_min_ttl > zc.neg_max_ttl:
        problems.append(f"{src}: {key}.neg_min_ttl: is above neg_max_ttl")
    if zc.servfail_ttl > 300:
        problems.append(f"{src}: {key}.servfail_ttl: at most 300 seconds (a few is best)")
    return problems


def _is_domain(text: str) -> bool:
    labels = text.strip().rstrip(".").split(".")
    return bool(text.strip()) and all(0 < len(label) < 64 for label in labels) and all(
        " " not in label for label in labels)


# ---------------------------------------------------------------- CLI overrides


def with_overrides(settings: Settings, *, listen: list[str] | None = None,
                   consul: str | None = None, upstream: list[str] | None = None,
                   domain: str | None = None, workers: int | None = None,
                   admin: str | None = None, user: str | None = None,
                   log_queries: bool | None = None, log_level: str | None = None) -> Settings:
    """Settings with the command-line flags that were given applied on top."""
    server = settings.server
    if listen:
        server = dataclasses.replace(server, listen=tuple(listen))
    if workers is not None:
        server = dataclasses.replace(server, workers=workers)
    if user is not None:
        server = dataclasses.replace(server, user=user)
    agent = settings.consul
    if consul is not None:
        agent = dataclasses.replace(agent, address=consul)
    if domain is not None:
        agent = dataclasses.replace(agent, domain=domain)
    up = settings.upstream
    if upstream:
        up = dataclasses.replace(up, servers=tuple(upstream))
    log_settings = settings.log
    if log_queries is not None:
        log_settings = dataclasses.replace(log_settings, queries=log_queries)
    if log_level is not None:
        log_settings = dataclasses.replace(log_settings, level=log_level.lower())
    admin_settings = settings.admin
    if admin is not None:
        admin_settings = dataclasses.replace(admin_settings, listen=admin)
    updated = dataclasses.replace(settings, server=server, consul=agent, upstream=up,
                                  log=log_settings, admin=admin_settings)
    problems = validate(dataclasses.replace(updated, source="command line"))
    if problems:
        raise ConfigError("\n".join(problems))
    return updated


def resolv_conf_servers(path: str, own: list[tuple[str, int]]) -> list[str]:
    """Nameservers of a resolv.conf, minus any that would send queries back to ourselves."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    servers = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            address = parts[1].split("%", 1)[0]
            if not _is_self(address, own):
                servers.append(address)
    return servers


def _is_self(address: str, own: list[tuple[str, int]]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True  # not an address we could use anyway
    for host, port in own:
        if port != 53:
            continue
        listen_ip = ipaddress.ip_address(host)
        if listen_ip == ip or (listen_ip.is_unspecified and (ip.is_loopback or ip.is_unspecified)):
            return True
    return False

