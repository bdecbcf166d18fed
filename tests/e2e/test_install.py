"""scripts/install-host in a temporary root directory (issue 14: an install path that matches
config/consuldns.service). Nothing is written outside the test's directories.

One install serves the module; the test that upgrades and uninstalls it comes last.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.harness.tools import need

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-host"
RESOLV_CONF = "nameserver 127.0.0.1\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"
UPSTREAMS = ["192.0.2.53", "2001:db8::53"]  # resolv.conf's, minus consuldns's own 127.0.0.1
INSTALLED = {"venv": "opt/consuldns", "link": "usr/local/bin/consuldns",
             "config": "etc/consuldns/consuldns.toml",
             "unit": "etc/systemd/system/consuldns.service",
             "wants": "etc/systemd/system/multi-user.target.wants/consuldns.service"}


def install_host(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(SCRIPT), "--root", str(root), *args],
                            capture_output=True, text=True, timeout=300, check=False)
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def run(argv: list[str]) -> subprocess.CompletedProcess:
    """Run outside the checkout, so that `import consuldns` cannot find it there."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          cwd="/")


def present(root: Path) -> set[str]:
    return {name for name, path in INSTALLED.items() if os.path.lexists(root / path)}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("systemctl", "systemd")
    root = tmp_path_factory.mktemp("root")
    (root / "etc").mkdir()
    (root / "etc/resolv.conf").write_text(RESOLV_CONF)
    install_host(root)
    return root


def test_the_link_runs_consuldns_from_the_venv_it_installed(root):
    link = root / INSTALLED["link"]
    assert os.readlink(link) == "../../../opt/consuldns/bin/consuldns"
    result = run([str(link), "--version"])
    assert result.stdout.splitlines()[0] == f"consuldns {importlib.metadata.version('consuldns')}"
    venv = root / INSTALLED["venv"]
    assert (venv / "bin/consuldns").read_text().startswith(f"#!{venv}/bin/python")
    where = run([str(venv / "bin/python"), "-c", "import consuldns; print(consuldns.__file__)"])
    assert where.stdout.startswith(f"{venv}/lib/")  # a copy: the checkout may go away


def test_the_config_has_the_host_resolvers_and_passes_check_config(root):
    config = root / INSTALLED["config"]
    settings = tomllib.loads(config.read_text())
    assert settings["upstream"]["servers"] == UPSTREAMS
    shipped = tomllib.loads((REPO / "config/consuldns.toml").read_text())
    shipped["upstream"]["servers"] = UPSTREAMS
    assert settings == shipped
    result = run([str(root / INSTALLED["link"]), "check-config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_accepts_the_unit_against_the_installed_paths(root):
    """systemd-analyze looks up ExecStart= (/usr/local/bin/consuldns) inside --root; the
    units the unit names and /bin/kill (ExecReload=) are copied in from this machine."""
    analyze = need("systemd-analyze", "systemd")
    assert (root / INSTALLED["unit"]).read_text() == (REPO / "config/consuldns.service").read_text()
    assert os.readlink(root / INSTALLED["wants"]) == "/etc/systemd/system/consuldns.service"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True,
                    dirs_exist_ok=True)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy(need("kill", "procps"), root / "bin/kill")
    result = run([analyze, "verify", f"--root={root}", "consuldns.service"])
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_without_upstreams_it_stops_before_installing_anything(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").write_text("nameserver 127.0.0.1\n")
    result = install_host(tmp_path, ok=False)
    assert result.returncode == 1
    assert "--upstream" in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["etc", "resolv.conf"]


def test_upgrade_keeps_the_config_and_uninstall_removes_the_rest(root):
    config = root / INSTALLED["config"]
    config.write_text(config.read_text() + "# edited by the admin\n")
    edited = config.read_text()
    upgrade = install_host(root, "--upstream", "127.0.0.1:5399")
    assert "--upstream not applied" in upgrade.stdout
    assert config.read_text() == edited
    assert run([str(root / INSTALLED["link"]), "--version"]).returncode == 0

    (root / "etc/resolv.conf").write_text("nameserver 127.0.0.1\n")
    refused = install_host(root, "--uninstall", ok=False)
    assert refused.returncode == 1 and "resolv.conf" in refused.stderr
    assert present(root) == set(INSTALLED)

    (root / "etc/resolv.conf").write_text("nameserver 192.0.2.53\n")
    install_host(root, "--uninstall")
    assert present(root) == {"config"}
    install_host(root, "--uninstall", "--purge")
    assert present(root) == set()
