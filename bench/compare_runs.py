"""Running the comparison's jobs (bench/compare_methods.py): which runs, their horizon, start/resume.

Runs live in <out>/<method>_s<seed>/ (metrics.jsonl, samples.jsonl, checkpoints), their logs in
<out>/logs/, the bench's own state (horizon and its reason, wall seconds per run) in
<out>/state.json. Without --resume an existing unfinished run directory is an error (nothing is
deleted); with it, finished runs are skipped and unfinished ones continue from their last checkpoint
(`forkrl train --resume`).

Horizon (issue 21 item 3): GRPO seed 0 runs to --min-steps (150), then on in chunks of
eval.every_steps until its entropy has plateaued (compare_stats.plateau_step: the mean over the
last 10 steps within 5% of the 10 before) or --max-steps; the step it stops at is every run's
horizon. 150 is the floor because the papers' ">10x GRPO" is stated at GRPO's plateau, and at 40
steps (issue 11) GRPO's entropy was still falling.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from benchlib import ROOT, run_forkrl_job
from compare_read import last_step, rows_of, step_entropy
from compare_stats import plateau_step

BASELINE = "grpo"
# The issue-21 comparison (the default --methods): GRPO, both controls at the scaled and the papers'
# coefficients, the set-point at two targets, and the peer's closed-loop rule on the same shape.
CORE = ["grpo", "clip_cov", "clip_cov_paper", "kl_cov", "kl_cov_paper", "setpoint", "setpoint_low", "setpoint_peer"]
EXTRA = ["dapo_clip_higher", "forking", "sent", "composed"]  # issue 11's other methods, on request
METHODS = CORE + EXTRA
# One seed: the second target (the issue asks one seed for it) and issue 11's other methods.
ONE_SEED = {"setpoint_low", *EXTRA}
PLATEAU_WINDOW, PLATEAU_REL = 10, 0.05
_STARTED: set[str] = set()  # runs this invocation started: continuing them (horizon chunks) needs no --resume


def run_name(method: str, seed: int) -> str:
    return f"{method}_s{seed}"


def planned_runs(methods: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """(method, seed) in seed-major order: every method's first seed before any second seed, so a
    comparison cut short is still paired on the seeds it has."""
    return [(m, s) for i, s in enumerate(seeds) for m in methods if i == 0 or m not in ONE_SEED]


def load_state(out: Path) -> dict:
    p = out / "state.json"
    return json.loads(p.read_text()) if p.exists() else {"horizon": None, "runs": {}}


def save_state(out: Path, state: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(out / "state.json")


def prepare_recipes(args) -> Path:
    """The recipe directory to run: recipes/compare, or a copy with base.yaml's base replaced."""
    src = Path(args.recipes_dir)
    if not src.is_absolute():
        src = ROOT / src
    if not args.base_recipe:
        return src
    dst = Path(args.out) / "recipes"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.yaml"):
        shutil.copy(f, dst / f.name)
    base = Path(args.base_recipe).resolve()
    text = (dst / "base.yaml").read_text()
    new, n = re.subn(r"(?m)^base:.*$", f"base: {base}", text)
    if n != 1:
        sys.exit(f"{src / 'base.yaml'}: expected one top-level 'base:' line, found {n}")
    (dst / "base.yaml").write_text(new)
    print(f"recipes: {dst} (base.yaml's base -> {base})", flush=True)
    return dst


def train(args, recipes: Path, state: dict, method: str, seed: int, steps: int) -> Path:
    """Bring run (method, seed) to `steps` steps: skip when there, else start or resume it."""
    name = run_name(method, seed)
    out = Path(args.out)
    run_dir = out / name
    rec = state["runs"].setdefault(name, {"method": method, "seed": seed, "wall_s": 0.0, "attempts": 0})
    done, rows = last_step(run_dir), rows_of(run_dir)
    if done >= steps and (any(r["step"] == steps and "eval/accuracy" in r for r in rows)
                          or not any("eval/accuracy" in r for r in rows)):
        print(f"  {name}: finished at step {done}, skipped", flush=True)
        return run_dir
    resume = run_dir.exists()
    if resume and not args.resume and name not in _STARTED:
        sys.exit(f"{run_dir} exists: pass --resume to continue it (finished runs are skipped), or "
                 f"choose another --out")
    overrides = [f"trainer.steps={steps}", f"trainer.seed={seed}", *args.override]
    if (method, seed) != (BASELINE, args.seeds[0]):
        # Step 0 evaluates the same base weights with the same fixed eval seeds in every run: GRPO's
        # first run measures it once (~3 min of 128 x 9 generations), the report shares it.
        overrides.append("eval.at_start=false")
    log = out / "logs" / f"{name}.{rec['attempts'] + 1}.log"
    print(f"  {name}: {'resume from step ' + str(done) if resume else 'start'} -> {steps} steps "
          f"(log {log})", flush=True)
    _STARTED.add(name)
    rc, wall = run_forkrl_job(str(recipes / f"{method}.yaml"), run_dir,
                              overrides + (["--resume"] if resume else []), log)
    rec["attempts"] += 1
    rec["wall_s"] += wall
    rec["rc"] = rc
    save_state(out, state)
    got = last_step(run_dir)
    print(f"  {name}: exit {rc} in {wall:.0f}s, at step {got}", flush=True)
    if rc != 0 or got < steps:
        sys.exit(f"{name} did not reach step {steps} (exit {rc}); see {log}. Rerun with --resume.")
    return run_dir


def prune(run_dir: Path) -> None:
    """Delete a finished run's checkpoints (~2 GB each): twenty runs' would not fit beside each other."""
    ck = run_dir / "checkpoints"
    if ck.is_dir():
        shutil.rmtree(ck)


def find_horizon(args, recipes: Path, state: dict, chunk: int) -> int:
    """Run GRPO (first seed) to --min-steps, then on until its entropy plateaus or --max-steps."""
    if state.get("horizon"):
        h = state["horizon"]
        print(f"horizon: {h} steps (from state.json: {state.get('horizon_reason')})", flush=True)
        train(args, recipes, state, BASELINE, args.seeds[0], h)  # finished -> skipped
        return h
    steps = args.min_steps
    while True:
        run_dir = train(args, recipes, state, BASELINE, args.seeds[0], steps)
        at = plateau_step(step_entropy(rows_of(run_dir), upto=steps), PLATEAU_WINDOW, PLATEAU_REL)
        if at is not None:
            reason = (f"GRPO's entropy plateaued at step {at} (mean of {PLATEAU_WINDOW} steps within "
                      f"{PLATEAU_REL:.0%} of the {PLATEAU_WINDOW} before); horizon >= --min-steps {args.min_steps}")
            break
        if steps >= args.max_steps:
            reason = f"GRPO's entropy still moving at --max-steps {steps}"
            break
        print(f"  grpo entropy still moving at step {steps}: on", flush=True)
        steps = min(steps + chunk, args.max_steps)
    state["horizon"], state["horizon_reason"] = steps, reason
    save_state(Path(args.out), state)
    print(f"horizon: {steps} steps ({reason})", flush=True)
    return steps
