"""Shared bits of the benchmarks: model choice and prompts (tokenized with the chat template)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench_model(arg: str | None) -> str:
    from forkrl.orchestrator.models import resolve_model

    return resolve_model(arg or os.environ.get("FORKRL_BENCH_MODEL", "smollm2-135m"))


def arithmetic_prompt_ids(model_path: str, n: int) -> list[list[int]]:
    from transformers import AutoTokenizer

    from forkrl.orchestrator.data import ArithmeticData, generate_arithmetic

    tok = AutoTokenizer.from_pretrained(model_path)
    rows = generate_arithmetic(ArithmeticData(), "train", n)
    out = []
    for r in rows:
        ids = tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def run_forkrl_job(recipe: str, run_dir: Path, overrides: list[str], log_path: Path,
                   timeout_s: float | None = None) -> tuple[int, float]:
    """One training job through the real CLI (`python -m forkrl.orchestrator.cli train`), its output to
    `log_path`. Returns (exit code, wall seconds). A job past `timeout_s` gets SIGTERM (the trainer
    checkpoints and shuts its Ray down), then after 120 s its whole process group is killed."""
    import os
    import signal
    import subprocess
    import time

    cmd = [sys.executable, "-m", "forkrl.orchestrator.cli", "train", recipe, "--run-dir", str(run_dir),
           "logging.progress=false", *overrides]
    print("$", " ".join(cmd), flush=True)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            print(f"  timeout after {timeout_s:.0f}s: stopping the job", flush=True)
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    return rc, time.perf_counter() - t0


def step_stats(seconds: list[float]) -> dict[str, float]:
    """median / min / max / n of per-step seconds (NaN when there are none)."""
    import statistics

    if not seconds:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "n": len(seconds)}


def recipe_path(recipe: str) -> str:
    """A recipe path as given (relative to the working directory), else relative to the repo root."""
    p = Path(recipe)
    return str(p.resolve() if p.exists() or p.is_absolute() else ROOT / p)
