"""One tiny-model job end to end through the real CLI: reward goes up, artefacts exist, and a
resumed run continues exactly where a straight run would be."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _recipe(tmp: Path, model: Path, steps: int) -> Path:
    recipe = {
        "model": {"path": str(model)},
        "data": {"type": "arithmetic", "num_train": 64, "num_eval": 8},
        "rollout": {"samples_per_prompt": 8, "max_new_tokens": 12, "max_model_len": 256, "kv_cache_gb": 0.25},
        "reward": {"num_workers": 1, "type": "function", "function": "e2e_reward:digit_share"},
        "learner": {"micro_batch_size": 16, "lr": 3.0e-3},
        "trainer": {"steps": steps, "prompts_per_step": 4},
        "eval": {"every_steps": 4, "num_prompts": 4},
        "checkpoint": {"every_steps": 4},
        "cluster": {"dashboard": False},
        "logging": {"output_dir": str(tmp / "runs"), "progress": False},
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _train(recipe: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-m", "forkrl.orchestrator.cli", "train", str(recipe), "--run-dir",
                           str(run_dir), *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _rows(run_dir: Path) -> dict[int, dict]:
    rows = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "reward/mean" in r:
            rows[r["step"]] = r
    return rows


def test_tiny_job_learns_and_resumes_exactly(tmp_path, tiny_model_dir):
    recipe = _recipe(tmp_path, tiny_model_dir, steps=8)
    straight = tmp_path / "straight"
    _train(recipe, straight)
    rows = _rows(straight)
    assert sorted(rows) == list(range(1, 9))
    first = sum(rows[s]["reward/mean"] for s in (1, 2)) / 2
    last = sum(rows[s]["reward/mean"] for s in (7, 8)) / 2
    assert last > first + 0.05, (first, last)
    assert all(rows[s]["step/weight_version"] == s for s in rows)
    assert (straight / "curves.png").stat().st_size > 1000
    assert (straight / "final_model" / "config.json").exists()
    assert (straight / "config.resolved.yaml").exists()
    assert [p.name for p in sorted((straight / "checkpoints").iterdir())] == ["step_000004", "step_000008"]

    # Same job stopped at step 4, then resumed to 8: steps 5..8 must match the straight run.
    parted = tmp_path / "parted"
    _train(recipe, parted, "trainer.steps=4")
    proc = _train(recipe, parted, "--resume")
    assert "resumed from" in proc.stderr
    resumed = _rows(parted)
    assert sorted(resumed) == list(range(1, 9))
    for s in range(5, 9):
        for key in ("reward/mean", "policy/entropy", "response/length_mean"):
            assert resumed[s][key] == pytest.approx(rows[s][key], rel=1e-3, abs=1e-4), (s, key)
