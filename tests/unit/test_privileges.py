"""Before dropping root: can the user switched to read the code it will run? (ops/privileges)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from consuldns.ops import privileges
from consuldns.ops.privileges import PrivilegeError, first_unreadable

OTHER_UID = os.getuid() + 54321  # a user that owns nothing here
OTHER_GID = os.getgid() + 54321


@pytest.fixture
def tree():
    """/tmp/X (0755)/open (0755)/closed (0700)/inner (0755)/code.py (0644), owned by us
    (pytest's own tmp_path lies under a 0700 directory)."""
    root = Path(tempfile.mkdtemp(dir="/tmp"))
    (root / "open" / "closed" / "inner").mkdir(parents=True)
    (root / "open" / "closed" / "inner" / "code.py").write_text("x = 1\n")
    root.chmod(0o755)
    (root / "open").chmod(0o755)
    (root / "open" / "closed").chmod(0o700)
    yield root
    shutil.rmtree(root)


def test_a_closed_directory_on_the_way_blocks_everything_under_it(tree):
    code = tree / "open" / "closed" / "inner" / "code.py"
    assert first_unreadable(code, OTHER_UID, OTHER_GID) == tree / "open" / "closed"
    assert first_unreadable(code, os.getuid(), os.getgid()) is None  # the owner can
    assert first_unreadable(tree / "open", OTHER_UID, OTHER_GID) is None


def test_traversing_is_not_reading(tree):
    closed = tree / "open" / "closed"
    closed.chmod(0o711)  # others may pass through, not list it
    code = closed / "inner" / "code.py"
    assert first_unreadable(code, OTHER_UID, OTHER_GID) is None
    assert first_unreadable(closed, OTHER_UID, OTHER_GID) == closed


def test_a_file_only_its_owner_reads_and_group_bits(tree):
    code = tree / "open" / "closed" / "inner" / "code.py"
    (tree / "open" / "closed").chmod(0o750)
    code.chmod(0o640)
    own_group = os.stat(code).st_gid
    assert first_unreadable(code, OTHER_UID, own_group) is None  # through the group bits
    code.chmod(0o600)
    assert first_unreadable(code, OTHER_UID, own_group) == code


def test_refuses_with_what_to_do_when_the_package_is_unreadable(tree, monkeypatch):
    package = tree / "open" / "closed" / "inner"
    monkeypatch.setattr(privileges, "switched_ids", lambda user: (OTHER_UID, OTHER_GID))
    monkeypatch.setattr(privileges, "code_paths", lambda: [package])
    with pytest.raises(PrivilegeError) as refused:
        privileges.prepare_switch("")
    message = str(refused.value)
    assert f"'nobody' cannot read {package} ({tree / 'open' / 'closed'}: drwx------" in message
    assert "/opt/consuldns" in message and "docs/install.md" in message
    assert "server.user" in message and message.endswith("Not starting")


def test_what_later_code_would_load_is_loaded_before_the_switch():
    """In a fresh interpreter: this process has long loaded (and cached) the codecs."""
    check = ("import sys; from consuldns.ops import privileges; before = set(sys.modules); "
             "privileges.preload(); print(sorted(set(sys.modules) - before))")
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            timeout=30, check=True).stdout
    assert "encodings.punycode" in loaded


def test_the_code_paths_include_the_package_the_interpreter_and_the_venv():
    paths = privileges.code_paths()
    package = Path(os.path.realpath(privileges.consuldns.__file__)).parent
    assert paths[0] == package
    assert Path(os.path.realpath(sys.prefix)) in paths
    assert Path(os.path.realpath(os.__file__)).parent in paths  # the standard library
