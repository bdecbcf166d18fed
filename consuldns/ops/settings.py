"""Settings: the configuration as frozen dataclasses, with every default.

Plain data: config.py reads them from TOML and the command line, validate.py checks them and
build.py turns them into running objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consuldns.serve.access import DEFAULT_ALLOW
from consuldns.serve.cache import CachePolicy

POLICIES = ("sequential", "random", "round_robin")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
ADMIN_OFF = ("", "off")
WATCH_MODES = ("auto", "off")


def fqdn(name: str) -> str:
    """A zone name as consuldns compares it: lowercase, with one trailing dot. Routes,
    [[zones]] names and [cache.zones] keys all go through it, so that they match however
    they are written ('Corp.Example.', 'corp.example')."""
    return name.strip().rstrip(".").lower() + "."


@dataclass(frozen=True)
class ServerSettings:
    listen: tuple[str, ...] = ("127.0.0.1:53",)
    workers: int = 1
    user: str = ""
    max_udp_size: int = 1232
    max_inflight: int = 1000
    max_tcp_connections: int = 200
    tcp_idle_timeout: float = 10.0
    rate_limit: float = 0.0
    rate_burst: int = 0
    chaos: bool = False


@dataclass(frozen=True)
class ConsulTlsSettings:
    """TLS to the agent's HTTPS API; "" means the CONSUL_* environment variable, if set."""

    ca_file: str = ""
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    verify: bool = True


@dataclass(frozen=True)
class ConsulSettings:
    address: str = "127.0.0.1:8600"
    timeout: float = 2.0
    domain: str = "consul"
    alt_domain: str = ""
    transport: str = "auto"
    udp_answer_limit: int = 3
    edns_size: int = 4096
    reverse_zones: tuple[str, ...] = ()
    http: str = ""  # "": $CONSUL_HTTP_ADDR, else 127.0.0.1:8500; "off" turns watching off
    watch: str = "auto"
    token_file: str = ""
    max_watches: int = 32
    tls: ConsulTlsSettings = ConsulTlsSettings()


@dataclass(frozen=True)
class UpstreamSettings:
    servers: tuple[str, ...] = ()
    resolv_conf: str = "/etc/resolv.conf"
    timeout: float = 4.5
    policy: str = "sequential"
    edns_size: int = 1232
    max_fails: int = 3
    health_interval: float = 0.5


@dataclass(frozen=True)
class ZoneSettings:
    name: str = ""
    servers: tuple[str, ...] = ()
    policy: str = "sequential"
    timeout: float = 0.0  # 0: upstream.timeout


# The per-zone cache tables are read straight into the cache's own policy type.
ZoneCacheSettings = CachePolicy


@dataclass(frozen=True)
class CacheSettings:
    size: int = 100000
    max_bytes: int = 64 * 1024 * 1024
    shuffle: bool = True
    shuffle_srv: bool = True
    prefetch: bool = False
    consul: ZoneCacheSettings = field(default_factory=ZoneCacheSettings)
    default: ZoneCacheSettings = field(default_factory=ZoneCacheSettings)
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
