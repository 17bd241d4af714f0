"""SIGTERM (what `ray job stop` and a spot reclaim send) ends the tiny job after the current phase with a
checkpoint and a one-line resume command; running that command finishes the job exactly once per step."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from forkrl.orchestrator import checkpoint as ckpt
from forkrl.orchestrator.metrics import read_metrics

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20  # tiny steps take well under a second: enough that SIGTERM lands mid-run


def _recipe(tmp: Path, model: Path) -> Path:
    recipe = {
        "model": {"path": str(model)},
        "data": {"type": "arithmetic", "num_train": 64, "num_eval": 4},
        "rollout": {"samples_per_prompt": 4, "max_new_tokens": 8, "max_model_len": 256, "kv_cache_gb": 0.25},
        "reward": {"num_workers": 1, "type": "function", "function": "e2e_reward:digit_share"},
        "learner": {"micro_batch_size": 16, "lr": 3.0e-3},
        "trainer": {"steps": STEPS, "prompts_per_step": 2},
        "eval": {"every_steps": 0},
        "checkpoint": {"every_steps": 100, "save_hf_at_end": False},
        "cluster": {"dashboard": False},
        "logging": {"progress": False, "plot": False},
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _wait_for(condition, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"the job exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_sigterm_checkpoints_and_prints_how_to_resume(tmp_path, tiny_model_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    run_dir = tmp_path / "run"
    metrics = run_dir / "metrics.jsonl"
    cmd = [sys.executable, "-m", "forkrl.orchestrator.cli", "train", str(_recipe(tmp_path, tiny_model_dir)),
           "--run-dir", str(run_dir)]
    with (tmp_path / "out.txt").open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: metrics.exists() and metrics.read_text().strip(), 600, "step 1 was logged", proc)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = (tmp_path / "out.txt").read_text()
    assert rc == 128 + signal.SIGTERM, text[-3000:]
    line = next(ln for ln in text.splitlines() if ln.startswith("forkrl: stopped by SIGTERM"))
    stopped_at = int(line.split(" at step ")[1].split(";")[0])
    assert 1 <= stopped_at < STEPS
    last = ckpt.latest(run_dir / "checkpoints")
    assert last.name == f"step_{stopped_at:06d}" and f"checkpoint {run_dir}/checkpoints/{last.name};" in line
    assert ckpt.load_state(last)["step"] == stopped_at == len(read_metrics(metrics))

    resume = shlex.split(line.split("resume with: ", 1)[1])
    assert resume[0] == "forkrl" and resume[-1] == "--resume"
    proc = subprocess.run([sys.executable, "-m", "forkrl.orchestrator.cli", *resume[1:]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from {last}" in proc.stderr
    rows = read_metrics(metrics)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert all(r["step/weight_version"] == r["step"] for r in rows)
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert len(lines) == STEPS  # the interrupted step was abandoned, not logged twice
