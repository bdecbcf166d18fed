"""Fault injection settings: what each kind means, and how set_fault combines them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from .config import ConfigError

# Kinds that are on or off; the others take the delay (seconds) as their value.
SWITCHES = ("drop", "close_tcp", "http_down")
DELAYED = ("latency", "servfail", "no_leader", "dns_lag")
FAULT_KINDS = ("latency", "drop", "servfail", "close_tcp", "no_leader", "http_down", "dns_lag")


@dataclass(frozen=True)
class Faults:
    """Active faults; servfail/no_leader are None while servers/leader are fine.

    latency, drop, close_tcp: DNS only. servfail: the agent lost its servers (DNS SERVFAIL,
    HTTP 500 "No known Consul servers", both after the delay). no_leader: the servers
    have no leader (HTTP 500 "No cluster leader" after the delay unless ?stale;
    /v1/status/leader ""). http_down: the HTTP listener refuses and drops connections.
    dns_lag: DNS answers from the catalog as it was this many seconds ago.
    """

    latency: float = 0.0
    drop: bool = False
    servfail: float | None = None
    close_tcp: bool = False
    no_leader: float | None = None
    http_down: bool = False
    dns_lag: float = 0.0


def with_fault(faults: Faults, kind: str, delay: float) -> Faults:
    """Faults plus one more; a delayed kind set again takes the new delay."""
    if kind not in FAULT_KINDS:
        raise ConfigError(f"fault kind must be one of {FAULT_KINDS}, got {kind!r}")
    if delay < 0:
        raise ConfigError("fault delay must be >= 0")
    return replace(faults, **{kind: True if kind in SWITCHES else delay})


def faults_to_dict(faults: Faults) -> dict[str, Any]:
    return asdict(faults)
