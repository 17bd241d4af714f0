"""The entropy-control comparison of issues 11 and 21: one command runs every method on 3 paired seeds
and writes the report.

    python bench/compare_methods.py --resume                 # the comparison (many hours: below)
    python bench/compare_methods.py --report-only            # rewrite the report from the runs so far
    python bench/compare_methods.py --out runs/cmp_smoke --report-dir runs/cmp_smoke --archive runs/cmp_smoke/a \
        --min-steps 2 --max-steps 2 --seeds 0 --override trainer.prompts_per_step=2 ...   # a smoke test

Methods (recipes/compare/<method>.yaml, all on recipes/compare/base.yaml; default: compare_runs.CORE):
grpo; clip_cov and kl_cov at the coefficients scaled to this batch's token count and clip_cov_paper /
kl_cov_paper at the papers' (ratio 2e-4, kappa 2e-3: at ~800 tokens per micro-batch these touch one
token each, which the report's "tokens touched per step" shows); setpoint (the entropy bonus moved by
the PI controller, target 1.0), setpoint_low (target 0.5, one seed) and setpoint_peer (Skywork-OR1's
adaptive coefficient, the peer's rule, on the same shape). --methods adds issue 11's others
(dapo_clip_higher, forking, sent, composed; one seed each).

Jobs (compare_runs.py): the horizon from GRPO's first seed (>= --min-steps 150, on until its entropy
plateaus), then every (method, seed) in seed-major order to the horizon, one after the other through
the real CLI. Each finished run's metrics.jsonl and per-problem evaluations are copied to --archive
(docs/results/compare_runs/<run>/, small; never checkpoints), so --report-only regenerates the report
without the run dirs. Reading (compare_read.py), statistics (compare_stats.py: paired bootstrap over
problems and seeds, seed-paired entropy ratios, the plateau rule) and the report and plots
(compare_report.py) are their own modules.

Cost, from issue 11's measurements (2-core CPU, GRPO, packed learner): ~35 s per training step and
1-1.5 min per evaluation (every 10 steps), so a 150-step run is ~1.5 h of steps + ~20 min of
evaluations, ~2 h; the default 8 methods x 3 seeds (setpoint_low: 1) are 22 runs, ~45 h one after
the other. Every run resumes from its checkpoint (--resume), so the comparison can run in pieces.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchlib import ROOT
from compare_read import archive_run, discover, eval_problems, finished, last_step, share_step0, summarise
from compare_report import write_reports
from compare_runs import (BASELINE, CORE, METHODS, find_horizon, load_state, planned_runs, prepare_recipes,
                          prune, run_name, save_state, train)


def shown(path: Path) -> str:
    """A path as the report prints it: relative to the repository when inside it (no machine's home)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def shape(recipes: Path, overrides: list[str]) -> str:
    try:
        from forkrl.orchestrator.config import load_config

        c = load_config(recipes / f"{BASELINE}.yaml", overrides)
        return (f"{c.trainer.prompts_per_step} prompts x {c.rollout.samples_per_prompt} samples, "
                f"{c.learner.mini_batches} mini-batches, micro-batch {c.learner.micro_batch_size}, lr "
                f"{c.learner.lr:g}, <= {c.rollout.max_new_tokens} new tokens, eval every {c.eval.every_steps} "
                f"steps on {c.eval.num_prompts} held-out problems, model {c.model.path}")
    except Exception as e:  # the report must not fail on a recipe the runs no longer match
        return f"shape unavailable: {e}"


def report(args, state: dict, recipes: Path) -> None:
    archive = Path(args.archive)
    if not state.get("horizon") and (archive / "state.json").exists():
        state = json.loads((archive / "state.json").read_text())  # report-only from the archive
    horizon = state.get("horizon")
    found = discover(Path(args.out), archive, list(args.methods))
    if not found:
        print("no runs to report yet")
        return
    res = {k: summarise(d, state["runs"].get(run_name(*k), {}).get("wall_s"), upto=horizon)
           for k, d in found.items()}
    share_step0(res, res.get((BASELINE, args.seeds[0])))
    done = finished(res, horizon)
    per_problem = {k: eval_problems(found[k]) for k in done}
    header = [f"Written by `python bench/compare_methods.py {' '.join(sys.argv[1:])}` from the runs under "
              f"`{shown(Path(args.out))}` and `{shown(archive)}`. Recipes: `{shown(recipes)}` "
              f"({shape(recipes, args.override)}).",
              f"Horizon: {horizon} steps ({state.get('horizon_reason', 'not fixed yet')}). Seeds: "
              f"{', '.join(f'{m} {sorted(s for mm, s in res if mm == m)}' for m in dict.fromkeys(m for m, _ in res))}."]
    verdicts = write_reports(done, per_problem, Path(args.report_dir), header, horizon, args.n_boot)
    print("\n".join(verdicts))
    print(f"\nreport: {Path(args.report_dir) / 'compare_methods.md'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/compare_methods", help="run directories, logs and state.json")
    ap.add_argument("--report-dir", default="docs/results", help="where compare_methods.md/.png go")
    ap.add_argument("--archive", default="docs/results/compare_runs",
                    help="each finished run's metrics.jsonl + eval_problems.jsonl (what the report reads)")
    ap.add_argument("--recipes-dir", default="recipes/compare")
    ap.add_argument("--base-recipe", help="run on this task instead: replaces base.yaml's base")
    ap.add_argument("--methods", nargs="+", default=CORE, choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="trainer.seed values, paired")
    ap.add_argument("--min-steps", type=int, default=150)
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--n-boot", type=int, default=4000, help="bootstrap replicates per interval")
    ap.add_argument("--resume", action="store_true", help="skip finished runs, resume unfinished ones")
    ap.add_argument("--keep-checkpoints", action="store_true",
                    help="keep every run's last checkpoint (~2 GB each); default: delete it once finished")
    ap.add_argument("--override", action="append", default=[], help="key=value for every run")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if BASELINE not in args.methods:
        sys.exit("the horizon and every comparison come from grpo: keep it in --methods")
    out = Path(args.out)
    recipes = prepare_recipes(args)
    state = load_state(out)
    if not args.report_only:
        from forkrl.orchestrator.config import load_config

        for m in args.methods:  # fail in seconds on a bad recipe, not hours into the comparison
            load_config(recipes / f"{m}.yaml", [f"trainer.steps={args.min_steps}", *args.override])
        chunk = load_config(recipes / f"{BASELINE}.yaml", args.override).eval.every_steps or 10
        t0 = time.perf_counter()
        print(f"[1/2] horizon from {BASELINE}, seed {args.seeds[0]}", flush=True)
        horizon = find_horizon(args, recipes, state, chunk)
        runs = planned_runs(list(args.methods), list(args.seeds))
        print(f"[2/2] {len(runs)} runs to {horizon} steps: {', '.join(run_name(*r) for r in runs)}", flush=True)
        for method, seed in runs:
            done = train(args, recipes, state, method, seed, horizon)
            archive_run(done, Path(args.archive) / done.name)
            if not args.keep_checkpoints and last_step(done) >= horizon:
                prune(done)
        archived = {"horizon": state["horizon"], "horizon_reason": state.get("horizon_reason"),
                    "runs": {k: {"wall_s": v.get("wall_s")} for k, v in state["runs"].items()}}
        save_state(Path(args.archive), archived)
        print(f"all runs done in {time.perf_counter() - t0:.0f}s this invocation", flush=True)
    report(args, state, recipes)


if __name__ == "__main__":
    main()
