"""bench/gpu_check.py, the script that drives the GPU paths on a lent GPU machine, run here on CPU on
the tiny model: it must stay runnable between the rare sessions that have a GPU, and its checks must
catch a push that does not arrive."""
import json
import os
import subprocess
import sys
from pathlib import Path

from tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]


# Runs the bench as its own __main__, after `patch` (Python source) ran in the same process.
LAUNCH = ("import runpy, sys; {patch}; sys.argv = {argv!r}; "
          "runpy.run_path({script!r}, run_name='__main__')")


def run_check(tmp_path: Path, patch: str = "pass") -> tuple[int, dict, str]:
    files = build_tiny_model(tmp_path / "files")
    out = tmp_path / "out"
    script = str(ROOT / "bench" / "gpu_check.py")
    argv = [script, "--model-files", str(files), "--model-dir", str(tmp_path / "model"), "--out", str(out),
            "--steps", "1", "--batch", "8", "--group", "4", "--micro", "4", "--max-new-tokens", "6",
            "--backends", "gloo"]
    cmd = [sys.executable, "-c", LAUNCH.format(root=str(ROOT), patch=patch, argv=argv, script=script)]
    # bench/ first on the path, as `python bench/gpu_check.py` has it (runpy.run_path does not add it)
    env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(ROOT / "bench"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    report = json.loads((out / "gpu_check.json").read_text()) if (out / "gpu_check.json").is_file() else {}
    return proc.returncode, report, proc.stdout + proc.stderr


def test_every_part_runs_and_passes_on_cpu(tmp_path):
    rc, report, log = run_check(tmp_path)
    assert rc == 0, log[-3000:]
    assert sorted(report) == ["agreement", "collective_gloo", "engine", "env", "learner", "push"]
    assert report["env"]["cuda"] is False
    learner = report["learner"]
    assert learner["ok"] and learner["dtype"] == "float32" and learner["device"] == "cpu"
    assert learner["param_sum_after"] != learner["param_sum_before"]
    assert report["engine"]["episodes"] == 64  # 8 prompts x 8 samples
    push = report["push"]
    assert push["ok"] and push["mismatched"] == [] and push["compared"] > 0
    assert push["numel"] == push["plan_numel"] > 0
    assert report["agreement"]["ok"] and report["agreement"]["mean_abs"] < 1e-4
    gloo = report["collective_gloo"]
    assert gloo["ok"] and gloo["mismatched"] == [] and gloo["compared"] == push["compared"]
    assert gloo["numel"] == gloo["plan_numel"] == push["plan_numel"]


def test_a_push_that_loads_nothing_fails_the_run(tmp_path):
    """The engine keeps its poisoned weights: the bit-for-bit check and the exit code say so."""
    rc, report, log = run_check(
        tmp_path, "from forkrl.actors.engines import HFEngine; HFEngine.receive_weights = lambda self, transport, plan, payload: 0")
    assert rc == 1, log[-3000:]
    assert report["push"]["ok"] is False and report["push"]["mismatched"]


def test_a_push_that_skips_the_norm_weights_fails_the_run(tmp_path):
    """1-D tensors barely move in training (bf16 norm weights may not move at all), so an engine that
    kept its own would match the learner's by chance; the engine is poisoned before the push."""
    skip = ("from forkrl.actors.engines import HFEngine; load = HFEngine._load; "
            "HFEngine._load = lambda self, pairs: load(self, [(n, t) for n, t in pairs if t.dim() > 1])")
    rc, report, log = run_check(tmp_path, skip)
    assert rc == 1, log[-3000:]
    assert report["push"]["ok"] is False
    assert all("norm" in n for n in report["push"]["mismatched"]) and report["push"]["mismatched"]
