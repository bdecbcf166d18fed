"""Why a listen address could not be bound, said with what to do about it.

One text for start-up (ops/app.py) and reload (ops/reload.py): the address and protocol
that failed, the reason, and the usual ways out (privileges for ports below 1024, the
resolver already holding port 53, an address this host does not have).
"""

from __future__ import annotations

import errno
import os
import sys

from consuldns import address
from consuldns.serve.listeners import BindError

PRIVILEGED_BELOW = 1024


def bind_error_text(error: BindError, dropped_root: bool = False) -> str:
    """`cannot bind ADDRESS (PROTOCOL): reason; what to do`; dropped_root: the process ran as
    root and switched to server.user, so it can no longer bind what root could."""
    where = f"{address.show(error.host, error.port)} ({error.protocol})"
    reason = (error.strerror or str(error)).lower()
    if error.errno == errno.EACCES and error.port < PRIVILEGED_BELOW:
        return f"cannot bind {where}: {reason}{_privileged_hint(error, dropped_root)}"
    if error.errno == errno.EADDRINUSE:
        return f"cannot bind {where}: {reason}{_in_use_hint(error)}"
    if error.errno == errno.EADDRNOTAVAIL:
        return (f"cannot bind {where}: {reason}: no interface of this host has {error.host} "
                "(`ip -brief address` lists them): listen on one of those")
    return f"cannot bind {where}: {reason}"


def _privileged_hint(error: BindError, dropped_root: bool) -> str:
    if dropped_root:
        return (". After dropping privileges consuldns can no longer bind ports below 1024: "
                "restart it, or run it under the systemd unit in config/ "
                "(CAP_NET_BIND_SERVICE) instead of as root with server.user")
    if os.geteuid() == 0:
        return (f": port {error.port} needs CAP_NET_BIND_SERVICE, which this root process lacks "
                "(a container or unit that drops capabilities?): grant it, or listen on a "
                "port >= 1024")
    interpreter = os.path.realpath(sys.executable)
    return (f": port {error.port} is below 1024 and this process is not root. Start consuldns as "
            "root (it binds, then drops to user nobody, or server.user), or under the systemd "
            "unit in config/consuldns.service (CAP_NET_BIND_SERVICE), or give the "
            f"interpreter that capability (`setcap cap_net_bind_service+ep {interpreter}`: "
            "every program it runs gets it), or listen on a port >= 1024 "
            f"(--listen {address.show(error.host, 5353)})")


def _in_use_hint(error: BindError) -> str:
    flags = "-lunp" if error.protocol == "udp" else "-ltnp"
    return (f": another server holds port {error.port} on this address (dnsmasq, "
            "systemd-resolved on 127.0.0.53, unbound, named, another consuldns, ...); "
            f"`ss {flags} 'sport = :{error.port}'` shows which (as root). Stop it, or give "
            "consuldns another address or port")
