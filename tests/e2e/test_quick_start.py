"""The README's Quick start (issue 14): scripts/try-it answers web.service.consul from the
example catalog, and .ci/run runs the README's own test commands."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness.ports import free_port

REPO = Path(__file__).resolve().parents[2]
WEB_HEALTHY = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
READY_MARK = "Ctrl-C stops consuldns and the double."


def code_blocks_after(heading: str, text: str) -> list[list[str]]:
    """The lines of each fenced block in the README section that starts with `heading`."""
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:sh)?\n(.*?)```", section, flags=re.DOTALL)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def commands(lines: list[str]) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in lines]


def test_readme_quick_start_is_two_commands():
    first = code_blocks_after("## Quick start", (REPO / "README.md").read_text())[0]
    assert commands(first) == ["bash scripts/try-it", "bash .ci/run"]


def test_ci_run_runs_the_readme_test_commands_with_debian_python():
    """Each command of the README's "Running the tests" block is a line of .ci/run."""
    blocks = code_blocks_after("### Running the tests", (REPO / "README.md").read_text())
    ci_lines = (REPO / ".ci/run").read_text().splitlines()
    wanted = commands(blocks[0])
    assert wanted[0].startswith("/usr/bin/python3 -m venv")
    assert [line for line in ci_lines if line in wanted] == wanted


def child_pids(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = log.read_text()
        if text in output:
            return output
        assert proc.poll() is None, f"try-it exited {proc.returncode}:\n{output}"
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} within {timeout} s:\n{log.read_text()}")


def test_try_it_answers_web_then_ctrl_c_stops_everything(tmp_path, upstream):
    """The venv given is used as is; --upstream keeps /etc/resolv.conf's servers out."""
    listen, consul = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    consul_http = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "TRY_VENV": sys.prefix, "TRY_LISTEN": listen, "TRY_CONSUL": consul,
           "TRY_CONSUL_HTTP": consul_http}
    log = tmp_path / "try-it.log"
    argv = ["bash", "scripts/try-it", "--upstream", upstream.address, "--admin", "off"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        output = wait_for_text(log, READY_MARK, proc, timeout=60)
        children = child_pids(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert proc.wait(timeout=20) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    answered = re.findall(r"^web\.service\.consul\.\s+\d+\s+IN\s+A\s+(\S+)$", output, re.MULTILINE)
    assert sorted(answered) == WEB_HEALTHY
    assert f"$ {sys.prefix}/bin/consuldns query web.service.consul --server {listen}" in output
    assert len(children) == 2  # the double and consuldns
    assert f"watching up to 32 Consul services through http://{consul_http}" in output
    assert not [pid for pid in children if alive(pid)]
