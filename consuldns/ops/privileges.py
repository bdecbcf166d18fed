"""Drop root after the sockets are bound, as dnsmasq's --user does.

After the switch the process reads code only as that user: a module imported lazily from a
directory it cannot read (a venv in /root, a pyenv interpreter) fails there, e.g. the IDNA
codec's punycode, which made `/cache?name=é.example` answer 500. So before switching,
`prepare_switch` loads what later code would import lazily, and refuses to start when the
user cannot read (and traverse to) the interpreter, the venv and every package loaded.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import sys
from pathlib import Path

import dns.rcode
import dns.rdatatype

import consuldns
from consuldns.consul import http
from consuldns.errors import ConsulDNSError

log = logging.getLogger("consuldns")

DEFAULT_USER_FOR_ROOT = "nobody"
READ, TRAVERSE = 4, 1  # permission bits, as in a mode's rwx triplets


class PrivilegeError(ConsulDNSError):
    """The process could not switch to the configured user."""


def switched_ids(user: str) -> tuple[int, int] | None:
    """(uid, gid) that drop_privileges(user) will switch to; None when it will not switch."""
    if os.geteuid() != 0 or user == "root":
        return None
    try:
        entry = pwd.getpwnam(user or DEFAULT_USER_FOR_ROOT)
    except KeyError:
        return None  # drop_privileges refuses to start
    return entry.pw_uid, entry.pw_gid


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


def prepare_switch(user: str) -> None:
    """Before dropping root: load what later code imports lazily, and raise PrivilegeError
    when the user switched to cannot read the code it will run."""
    ids = switched_ids(user)
    if ids is None:
        return
    preload()
    for path in code_paths():
        blocker = first_unreadable(path, *ids)
        if blocker is not None:
            raise PrivilegeError(_unreadable_message(user or DEFAULT_USER_FOR_ROOT, path,
                                                     blocker))


def preload() -> None:
    """Use now what is otherwise loaded on first use: the IDNA codec and punycode (names
    like é.example), dnspython's type and rcode tables (the admin listener's /cache), the
    HTTP client's connection code (the watch)."""
    "é.example".encode("idna").decode("idna")
    dns.rdatatype.to_text(dns.rdatatype.from_text("AAAA"))
    dns.rcode.to_text(dns.rcode.from_text("SERVFAIL"))
    http.warm_up()  # the watch of the agent's HTTP API


def code_paths() -> list[Path]:
    """What the process reads code from: the consuldns package first, then the interpreter,
    its prefix (the venv) and the directory of every module loaded so far."""
    paths = [Path(consuldns.__file__).parent, Path(sys.executable), Path(sys.prefix)]
    for module in list(sys.modules.values()):
        where = getattr(module, "__file__", None)
        if where:
            paths.append(Path(where).parent)
    unique = dict.fromkeys(Path(os.path.realpath(path)) for path in paths)
    return list(unique)


def first_unreadable(path: Path, uid: int, gid: int) -> Path | None:
    """The first directory on the way to path (or path itself) that uid/gid (no
    supplementary groups, as after the switch) cannot traverse, or path when it cannot read
    it; None when it can. Plain mode bits: ACLs are not looked at."""
    for directory in reversed(path.parents):
        if not _allows(directory, uid, gid, TRAVERSE):
            return directory
    wanted = READ | TRAVERSE if path.is_dir() else READ
    return None if _allows(path, uid, gid, wanted) else path


def _allows(path: Path, uid: int, gid: int, wanted: int) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    if info.st_uid == uid:
        bits = info.st_mode >> 6
    elif info.st_gid == gid:
        bits = info.st_mode >> 3
    else:
        bits = info.st_mode
    return bits & wanted == wanted


def _unreadable_message(name: str, path: Path, blocker: Path) -> str:
    try:
        info = blocker.stat()
        owner = f"{stat.filemode(info.st_mode)} owned by uid {info.st_uid}, gid {info.st_gid}"
    except OSError as exc:
        owner = exc.strerror or str(exc)
    return (f"server.user: consuldns switches to {name!r} after binding its ports, but "
            f"{name!r} cannot read {path} ({blocker}: {owner}), so code loaded later (for an "
            "IDN name, say) would fail. Install consuldns where every user can read it, in a "
            "venv under /opt/consuldns as docs/install.md describes, or set server.user "
            "(--user) to a user that can read it. Not starting")
