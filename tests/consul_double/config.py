"""The agent's dns_config keys the double models, as frozen data parsed from JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

MODERN = "modern"
LEGACY = "0.6.4"
PROFILES = (MODERN, LEGACY)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(ValueError):
    """A catalog or config value the double cannot use; the message names the key."""


def parse_duration(value: Any, key: str) -> float:
    """Seconds from a number or a Go duration string such as "10s" or "1m30s"."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("0", ""):
            return 0.0
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    raise ConfigError(f"{key}: expected a duration like 10s, got {value!r}")


def ttl_seconds(value: Any, key: str) -> int:
    """A TTL in whole seconds, truncated as Go's Duration / time.Second does."""
    return int(parse_duration(value, key))


def fqdn(name: str) -> str:
    """The name lowercased with exactly one trailing dot ("" stays "")."""
    name = name.strip().lower().rstrip(".")
    return name + "." if name else ""


@dataclass(frozen=True)
class PreparedQuery:
    """A prepared query definition: which service it returns and how."""

    name: str
    service: str
    id: str = ""
    ttl: int | None = None
    tags: tuple[str, ...] = ()
    only_passing: bool = False


@dataclass(frozen=True)
class SOAConfig:
    """dns_config.soa (modern); 0.6.4 hard-codes these defaults and TTL 0."""

    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    min_ttl: int = 0


@dataclass(frozen=True)
class DoubleConfig:
    """Agent DNS settings; defaults are Consul's."""

    domain: str = "consul."
    alt_domain: str = ""
    datacenter: str = "dc1"
    datacenters: tuple[str, ...] = ()
    node_ttl: int = 0
    service_ttl: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    only_passing: bool = False
    udp_answer_limit: int = 3
    enable_truncate: bool = False
    a_record_limit: int = 0
    recursors: tuple[str, ...] = ()
    recursor_timeout: float = 2.0
    soa: SOAConfig = SOAConfig()
    enable_additional_node_meta_txt: bool = True
    prepared_queries: Mapping[str, PreparedQuery] = field(
        default_factory=lambda: MappingProxyType({})
    )
    srv_trim_bug: bool = False
    # Consul 1.10+ (PR #10009) sets the OPT record after trimming, counted in the size; off,
    # syncExtra drops it from a trimmed reply (the double's default, as the code reads).
    keep_opt_when_trimmed: bool = False

    def known_datacenters(self) -> frozenset[str]:
        return frozenset((self.datacenter.lower(), *(dc.lower() for dc in self.datacenters)))


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _int(value: Any, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _str_list(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(_str(v, key) for v in value)


def _service_ttl(value: Any) -> Mapping[str, int]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"service_ttl: expected an object, got {value!r}")
    return MappingProxyType(
        {_str(k, "service_ttl"): ttl_seconds(v, f"service_ttl.{k}") for k, v in value.items()}
    )


def _soa(value: Any) -> SOAConfig:
    if not isinstance(value, Mapping):
        raise ConfigError(f"soa: expected an object, got {value!r}")
    unknown = set(value) - {f.name for f in fields(SOAConfig)}
    if unknown:
        raise ConfigError(f"soa: unknown keys {sorted(unknown)}")
    return SOAConfig(**{k: _int(v, f"soa.{k}") for k, v in value.items()})


def _prepared_query(name: str, value: Any) -> PreparedQuery:
    key = f"prepared_queries.{name}"
    if isinstance(value, str):
        return PreparedQuery(name=name, service=value)
    if not isinstance(value, Mapping) or "service" not in value:
        raise ConfigError(f"{key}: expected a service name or an object with 'service'")
    unknown = set(value) - {"service", "id", "ttl", "tags", "only_passing"}
    if unknown:
        raise ConfigError(f"{key}: unknown keys {sorted(unknown)}")
    ttl = value.get("ttl")
    return PreparedQuery(
        name=name,
        service=_str(value["service"], f"{key}.service"),
        id=_str(value.get("id", ""), f"{key}.id"),
        ttl=None if ttl is None else ttl_seconds(ttl, f"{key}.ttl"),
        tags=_str_list(value.get("tags", []), f"{key}.tags"),
        only_passing=_bool(value.get("only_passing", False), f"{key}.only_passing"),
    )


def _prepared_queries(value: Any) -> Mapping[str, PreparedQuery]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"prepared_queries: expected an object, got {value!r}")
    return MappingProxyType({k: _prepared_query(k, v) for k, v in value.items()})


_PARSERS = {
    "domain": lambda v: fqdn(_str(v, "domain")) or "consul.",
    "alt_domain": lambda v: fqdn(_str(v, "alt_domain")),
    "datacenter": lambda v: _str(v, "datacenter").lower(),
    "datacenters": lambda v: tuple(dc.lower() for dc in _str_list(v, "datacenters")),
    "node_ttl": lambda v: ttl_seconds(v, "node_ttl"),
    "service_ttl": _service_ttl,
    "only_passing": lambda v: _bool(v, "only_passing"),
    "udp_answer_limit": lambda v: _int(v, "udp_answer_limit", 1),
    "enable_truncate": lambda v: _bool(v, "enable_truncate"),
    "a_record_limit": lambda v: _int(v, "a_record_limit"),
    "recursors": lambda v: _str_list(v, "recursors"),
    "recursor_timeout": lambda v: parse_duration(v, "recursor_timeout"),
    "soa": _soa,
    "enable_additional_node_meta_txt": lambda v: _bool(v, "enable_additional_node_meta_txt"),
    "prepared_queries": _prepared_queries,
    "srv_trim_bug": lambda v: _bool(v, "srv_trim_bug"),
    "keep_opt_when_trimmed": lambda v: _bool(v, "keep_opt_when_trimmed"),
}


def update_config(config: DoubleConfig, changes: Mapping[str, Any]) -> DoubleConfig:
    """A copy of config with JSON-style changes applied; unknown keys are errors."""
    unknown = set(changes) - set(_PARSERS)
    if unknown:
        raise ConfigError(f"unknown config keys {sorted(unknown)}; known: {sorted(_PARSERS)}")
    return replace(config, **{k: _PARSERS[k](v) for k, v in changes.items()})


def config_from_dict(data: Mapping[str, Any] | None) -> DoubleConfig:
    """DoubleConfig from the "config" object of a catalog file."""
    return update_config(DoubleConfig(), data or {})


def config_to_dict(config: DoubleConfig) -> dict[str, Any]:
    """The JSON form of a config, as accepted by config_from_dict."""
    queries = {
        name: {
            "service": q.service,
            "id": q.id,
            "tags": list(q.tags),
            "only_passing": q.only_passing,
            **({} if q.ttl is None else {"ttl": q.ttl}),
        }
        for name, q in config.prepared_queries.items()
    }
    return {
        "domain": config.domain,
        "alt_domain": config.alt_domain,
        "datacenter": config.datacenter,
        "datacenters": list(config.datacenters),
        "node_ttl": config.node_ttl,
        "service_ttl": dict(config.service_ttl),
        "only_passing": config.only_passing,
        "udp_answer_limit": config.udp_answer_limit,
        "enable_truncate": config.enable_truncate,
        "a_record_limit": config.a_record_limit,
        "recursors": list(config.recursors),
        "recursor_timeout": config.recursor_timeout,
        "soa": {
            "refresh": config.soa.refresh,
            "retry": config.soa.retry,
            "expire": config.soa.expire,
            "min_ttl": config.soa.min_ttl,
        },
        "enable_additional_node_meta_txt": config.enable_additional_node_meta_txt,
        "prepared_queries": queries,
        "srv_trim_bug": config.srv_trim_bug,
        "keep_opt_when_trimmed": config.keep_opt_when_trimmed,
    }
