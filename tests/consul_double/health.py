"""Health filtering and SRV weights, as Consul's CheckServiceNodes.Filter and findWeight."""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Check, Node, Service


@dataclass(frozen=True, slots=True)
class Instance:
    """A service instance joined with its node, like a CheckServiceNode."""

    node: Node
    service: Service

    @property
    def checks(self) -> tuple[Check, ...]:
        return self.node.checks + self.service.checks


def _is_critical(check: Check) -> bool:
    # Maintenance mode is a critical check with a reserved ID.
    return check.status in ("critical", "maintenance")


def passes(instance: Instance, only_passing: bool) -> bool:
    """False if any check is critical, or (only_passing) anything but passing."""
    for check in instance.checks:
        if _is_critical(check) or (only_passing and check.status != "passing"):
            return False
    return True


def healthy(instances: list[Instance], only_passing: bool) -> list[Instance]:
    return [i for i in instances if passes(i, only_passing)]


def matches_tags(instance: Instance, tags: tuple[str, ...]) -> bool:
    """Prepared-query tag filter: every tag required, "!tag" forbidden, case-insensitive."""
    have = {t.lower() for t in instance.service.tags}
    return all((t[1:].lower() not in have) if t.startswith("!") else (t.lower() in have)
               for t in tags)


def srv_weight(instance: Instance) -> int:
    """Modern SRV weight: Weights.Warning if any check warns, else Weights.Passing."""
    statuses = {c.status for c in instance.checks}
    if "maintenance" in statuses or "critical" in statuses:
        return 0
    passing, warning = instance.service.weights
    return warning if "warning" in statuses else passing
