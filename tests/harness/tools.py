"""Tools from apt that tests need: missing ones fail in CI (which must install them), skip elsewhere."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import sys
from pathlib import Path

from tests.harness.missing import unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]


def need(binary: str, package: str) -> str:
    """The path of `binary` (a name on PATH or an absolute path); fails or skips without it."""
    path = shutil.which(binary)
    if path is None:
        unavailable(f"{binary} missing: apt-get install {package} (see .ci/apt-packages.txt)")
    return path


@functools.cache
def code_readable_by_nobody() -> bool:
    """Can `nobody` read the checkout and the interpreter's venv? Started as root, consuldns
    switches to nobody and refuses to start when it cannot (ops/privileges.py)."""
    from consuldns.ops.privileges import first_unreadable

    nobody = pwd.getpwnam("nobody")
    return all(first_unreadable(Path(os.path.realpath(path)), nobody.pw_uid,
                                nobody.pw_gid) is None
               for path in (REPO_ROOT / "consuldns", sys.prefix))


def need_code_readable_by_nobody() -> None:
    """For tests of what happens after switching from root to nobody."""
    if os.geteuid() != 0:
        unavailable("needs root: run the suite as root (CI does)")
    if not code_readable_by_nobody():
        unavailable(f"nobody cannot read {REPO_ROOT} or {sys.prefix} (a clone in a 0700 home?): "
                "clone under /srv or /opt to test dropping root")
