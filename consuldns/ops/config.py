"""Configuration: TOML (tomllib) and command-line flags -> Settings (ops/settings.py).

Opens no sockets. Every problem is reported as `FILE: KEY: what is wrong; what to do`, and
all problems of a file are reported at once (ops/validate.py). CLI flags override the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from consuldns import address
from consuldns.errors import ConfigError
from consuldns.ops.settings import Settings
from consuldns.ops.validate import problems_of

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
    problems.extend(problems_of(settings))  # on what was readable: every problem at once
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


# Keys of earlier versions, and where their setting lives now.
MOVED = {
    "server.timeout": "the deadline is now per route: set upstream.timeout (default "
                      "upstreams and [[zones]], default 4.5) and consul.timeout (the agent, "
                      "default 2.0) instead",
}


def _build(cls: type, table: dict, prefix: str, source: str, problems: list[str]):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    values = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if dotted in MOVED:
            problems.append(f"{source}: {dotted}: no longer exists; {MOVED[dotted]}")
            continue
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
        converted = {k: _convert(item, v, f"{dotted}.{k}", source, problems)
                     for k, v in value.items()}
        return {k: v for k, v in converted.items() if v is not _INVALID}
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


# ---------------------------------------------------------------- CLI overrides


def with_overrides(settings: Settings, *, listen: list[str] | None = None,
                   consul: str | None = None, consul_http: str | None = None,
                   upstream: list[str] | None = None,
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
    if consul_http is not None:
        agent = dataclasses.replace(agent, http=consul_http)
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
    problems = problems_of(dataclasses.replace(updated, source="command line"))
    if problems:
        raise ConfigError("\n".join(problems))
    return updated


@dataclass(frozen=True)
class ConfigSource:
    """Where the settings come from: a file (or none) plus the command-line flags.

    Kept by the server so SIGHUP re-reads the same file and applies the same flags on top.
    """

    path: Path | None = None
    overrides: dict = field(default_factory=dict)

    def load(self) -> Settings:
        """Read the file (defaults when there is none) and apply the flags; ConfigError if bad."""
        base = load(self.path) if self.path is not None else Settings()
        return with_overrides(base, **self.overrides)


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
            server = parts[1].split("%", 1)[0]
            if not _is_self(server, own):
                servers.append(server)
    return servers


def _is_self(server: str, own: list[tuple[str, int]]) -> bool:
    try:
        ipaddress.ip_address(server)
    except ValueError:
        return True  # not an address we could use anyway
    return any(address.reaches((server, 53), listen) for listen in own)

