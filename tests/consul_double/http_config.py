"""The agent settings the HTTP side models (limits, ACL tokens, query times), from JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from .config import ConfigError, _bool, _int, _str, _str_list, parse_duration
from .gotime import format_go_duration


@dataclass(frozen=True)
class HttpConfig:
    """Defaults are Consul's except check_update_interval (5m in Consul) and the streaming
    backend (on in Consul); acl_tokens None means ACLs are disabled."""

    max_conns_per_client: int = 200
    check_update_interval: float = 0.0
    default_query_time: float = 300.0
    max_query_time: float = 600.0
    use_streaming_backend: bool = False
    leader: str = "127.0.0.1:8300"
    node_name: str = "consul-double"
    acl_tokens: Mapping[str, tuple[str, ...]] | None = None
    acl_default_token: str = ""


def _acl_tokens(value: Any) -> Mapping[str, tuple[str, ...]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"acl_tokens: expected an object of token -> [service prefix], "
                          f"got {value!r}")
    return MappingProxyType({_str(k, "acl_tokens"): _str_list(v, f"acl_tokens.{k}")
                             for k, v in value.items()})


def _positive_duration(value: Any, key: str) -> float:
    seconds = parse_duration(value, key)
    if seconds <= 0:
        raise ConfigError(f"{key}: must be above 0")
    return seconds


_PARSERS = {
    "max_conns_per_client": lambda v: _int(v, "max_conns_per_client"),
    "check_update_interval": lambda v: parse_duration(v, "check_update_interval"),
    "default_query_time": lambda v: _positive_duration(v, "default_query_time"),
    "max_query_time": lambda v: _positive_duration(v, "max_query_time"),
    "use_streaming_backend": lambda v: _bool(v, "use_streaming_backend"),
    "leader": lambda v: _str(v, "leader"),
    "node_name": lambda v: _str(v, "node_name"),
    "acl_tokens": _acl_tokens,
    "acl_default_token": lambda v: _str(v, "acl_default_token"),
}


def update_http_config(config: HttpConfig, changes: Mapping[str, Any]) -> HttpConfig:
    """A copy with JSON-style changes applied; unknown keys are errors."""
    if not isinstance(changes, Mapping):
        raise ConfigError("http: expected an object")
    unknown = set(changes) - set(_PARSERS)
    if unknown:
        raise ConfigError(f"unknown http config keys {sorted(unknown)}; known: {sorted(_PARSERS)}")
    return replace(config, **{k: _PARSERS[k](v) for k, v in changes.items()})


def http_config_to_dict(config: HttpConfig) -> dict[str, Any]:
    """The JSON form (durations as Go strings), accepted by update_http_config."""
    tokens = config.acl_tokens
    return {
        "max_conns_per_client": config.max_conns_per_client,
        "check_update_interval": format_go_duration(config.check_update_interval),
        "default_query_time": format_go_duration(config.default_query_time),
        "max_query_time": format_go_duration(config.max_query_time),
        "use_streaming_backend": config.use_streaming_backend,
        "leader": config.leader,
        "node_name": config.node_name,
        "acl_tokens": None if tokens is None else {k: list(v) for k, v in tokens.items()},
        "acl_default_token": config.acl_default_token,
    }
