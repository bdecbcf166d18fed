"""File descriptors: raise the open-files limit at start and say when the caps do not fit.

Every upstream exchange holds a socket, every client TCP connection and admin connection
one, every listen address two. With the common `ulimit -n 1024`, server.max_inflight (1 000)
and server.max_tcp_connections (200) alone do not fit: socket() then fails with EMFILE and
every miss gets SERVFAIL. So the soft limit is raised to the hard one at start (allowed
without privileges), and a warning names the numbers and the fix when they still do not fit.
"""

from __future__ import annotations

import logging
import resource

from consuldns.ops.admin import MAX_CONNECTIONS as ADMIN_CONNECTIONS
from consuldns.ops.settings import Settings

log = logging.getLogger("consuldns")

# stdio, the event loop, its signal pipe, health probes, readiness checks, the admin
# listeners and the workers' private sockets, log files, imports.
SPARE = 64
NR_OPEN = "/proc/sys/fs/nr_open"  # the most a process may set when the hard limit is infinite


def raise_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _nr_open()
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.debug("open-files limit stays %d: %s", soft, exc)
            return soft
        log.info("open-files limit raised from %d to %d (the hard limit)", soft, target)
        return target
    return soft


def _nr_open() -> int:
    try:
        with open(NR_OPEN) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 1 << 20  # Linux's default fs.nr_open


def needed(settings: Settings) -> int:
    """Descriptors one serving process may need at once with these settings."""
    server = settings.server
    return (server.max_inflight + server.max_tcp_connections + ADMIN_CONNECTIONS
            + 2 * len(server.listen) + SPARE)


def check_fit(settings: Settings, limit: int) -> str | None:
    """The warning to log when the caps do not fit under `limit`, else None."""
    need = needed(settings)
    if limit == resource.RLIM_INFINITY or need <= limit:
        return None
    server = settings.server
    return (f"open-files limit {limit} is below what the caps may need ({need} = "
            f"server.max_inflight {server.max_inflight} + server.max_tcp_connections "
            f"{server.max_tcp_connections} + {ADMIN_CONNECTIONS} admin connections + "
            f"{2 * len(server.listen)} listen sockets + {SPARE} spare): past it upstream "
            f"queries fail with SERVFAIL. Raise the limit to at least {need} (LimitNOFILE= in "
            "the systemd unit, `ulimit -n` before starting) or lower server.max_inflight and "
            "server.max_tcp_connections")


def prepare(settings: Settings) -> None:
    """At start: raise the limit, and warn once when the caps still do not fit."""
    raise_limit()
    warn_unless_fit(settings)


def warn_unless_fit(settings: Settings) -> None:
    """Warn when the caps of settings do not fit under the limit in force (start, reload)."""
    warning = check_fit(settings, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    if warning is not None:
        log.warning("%s", warning)
