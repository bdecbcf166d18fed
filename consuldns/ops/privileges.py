"""Drop root after the sockets are bound, as dnsmasq's --user does."""

from __future__ import annotations

import logging
import os
import pwd

from consuldns.errors import ConsulDNSError

log = logging.getLogger("consuldns")

DEFAULT_USER_FOR_ROOT = "nobody"


class PrivilegeError(ConsulDNSError):
    """The process could not switch to the configured user."""


def drop_privileges(user: str) -> bool:
    """Switch to user (default nobody when running as root); a no-op when not root. True when
    the process switched (it can no longer bind ports below 1024).

    user "root" keeps root on purpose (containers that need it; not recommended). After the
    switch the process cannot bind ports below 1024 again, so a reload that adds such a
    listen address fails; the systemd unit in config/ avoids that by never being root.
    """
    if os.geteuid() != 0:
        if user and user != pwd.getpwuid(os.geteuid()).pw_name:
            log.info("not root: server.user %r ignored, running as uid %d", user, os.geteuid())
        return False
    name = user or DEFAULT_USER_FOR_ROOT
    if name == "root":
        log.warning("running as root (user = \"root\"): privileges are not dropped")
        return False
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(f"server.user: no user {name!r} on this host; create it or set "
                             "another (refusing to keep running as root)") from None
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    if os.geteuid() == 0:
        raise PrivilegeError(f"still root after switching to {name!r}")
    log.info("dropped privileges to %s (uid %d, gid %d)", name, entry.pw_uid, entry.pw_gid)
    return True
