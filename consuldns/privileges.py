"""Drop root after the sockets are bound, as dnsmasq's --user does."""

from __future__ import annotations

import logging
import os
import pwd

log = logging.getLogger("consuldns")

DEFAULT_USER_FOR_ROOT = "nobody"


def drop_privileges(user: str) -> None:
    """Switch to user (default nobody when running as root); a no-op when not root.

    user "root" keeps root on purpose (containers that need it; not recommended).
    """
    if os.geteuid() != 0:
        return
    name = user or DEFAULT_USER_FOR_ROOT
    if name == "root":
        log.warning("running as root (user = \"root\"): privileges are not dropped")
        return
    entry = pwd.getpwnam(name)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    log.info("dropped privileges to %s (uid %d)", name, entry.pw_uid)
