"""Tools from apt that tests need: missing ones fail in CI (which must install them), skip elsewhere."""

from __future__ import annotations

import os
import shutil

import pytest


def missing(message: str) -> None:
    """Fail under CI=1 (.ci/run installs everything), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def need(binary: str, package: str) -> str:
    """The path of `binary` (a name on PATH or an absolute path); fails or skips without it."""
    path = shutil.which(binary)
    if path is None:
        missing(f"{binary} missing: apt-get install {package} (see .ci/apt-packages.txt)")
    return path
