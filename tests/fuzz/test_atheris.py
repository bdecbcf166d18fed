"""A bounded coverage-guided run (atheris) over the parse and shape functions (issue 7)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.harness.missing import unavailable

RUNS = 40000
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_coverage_guided_fuzz_run_finds_nothing(tmp_path, capsys):
    try:
        import atheris  # noqa: F401
    except ImportError:
        unavailable("atheris missing: pip install -e '.[test]'")
    from tests.fuzz.atheris_target import seeds

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(seeds()):
        (corpus / f"seed-{index}").write_bytes(seed)
    findings = tmp_path / "findings"
    findings.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_target", f"-runs={RUNS}", "-seed=7",
         "-max_len=1024", "-max_total_time=60", "-print_final_stats=1",
         f"-artifact_prefix={findings}/", str(corpus)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    log = result.stderr
    saved = sorted(p.name for p in findings.iterdir())
    assert result.returncode == 0, f"finding saved as {saved}:\n{log[-4000:]}"
    done = re.search(r"Done (\d+) runs", log)
    assert done is not None, log[-2000:]
    edges = (re.findall(r"cov: (\d+)", log) or ["?"])[-1]
    with capsys.disabled():
        print(f"\natheris: {done.group(1)} inputs run, "
              f"{edges} coverage edges, corpus {len(list(corpus.iterdir()))}")
    assert int(done.group(1)) >= RUNS
