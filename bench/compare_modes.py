"""The default recipe in three layouts (and a baseline), one after the other on one machine, same
seed and steps:

    sync-split-padded  sync-split with learner.packing=false: the lock-step loop as it was before the
                    learner packed its micro-batches (the baseline "today" of issue 8's target)
    sync-split      trainer.mode=sync  trainer.layout=split       (lock-step, each role its own cores)
    sync-colocated  trainer.mode=sync  trainer.layout=colocated   (roles take turns, each phase all cores)
    async-split     trainer.mode=async trainer.layout=split       (rollout overlaps training)

Per mode: seconds per step (median of the steps after the first, min/max), steps per hour, the mean
fraction of wall time each role is busy (`role/*_busy_frac`), and the held-out `eval/accuracy` at the
end. Against the issue-8 targets: sync-colocated <= 0.6x sync-split's seconds per step (printed against
both sync-split rows: the same code's, and the padded baseline's); async steps/h
>= 0.9 x the ideal overlap, i.e. sync-split's steps/h x (gen + train) / max(gen, train) with gen and
train the median `time/generate` and `time/train` of the sync-split run.

    python bench/compare_modes.py                           # the recipe as is (20 steps: ~1 h or more on 2 cores)
    python bench/compare_modes.py --steps 2 --results-dir runs/compare_modes --override trainer.prompts_per_step=2
    python bench/compare_modes.py --modes sync-split async-split --skip-existing

Writes <results-dir>/compare_modes.md and compare_modes.png (default docs/results/). A mode whose
config fields this checkout does not have is skipped with a message; without trainer.mode/layout at all,
sync-split runs as the recipe is (today's only layout).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

from benchlib import ROOT, recipe_path, run_forkrl_job, step_stats

MODES: dict[str, list[str]] = {
    "sync-split-padded": ["trainer.mode=sync", "trainer.layout=split", "learner.packing=false"],
    "sync-split": ["trainer.mode=sync", "trainer.layout=split"],
    "sync-colocated": ["trainer.mode=sync", "trainer.layout=colocated"],
    "async-split": ["trainer.mode=async", "trainer.layout=split"],
}
ROLES = ("rollout", "learner", "verifier")
NAN = float("nan")


def mode_overrides(recipe: str, mode: str, common: list[str]) -> tuple[list[str] | None, str]:
    """(overrides, note) for a mode; None when this checkout's config cannot express it. sync-split is
    today's behaviour, so it falls back to whichever of its two fields the config has (or neither)."""
    from forkrl.orchestrator.config import ConfigError, load_config

    full = MODES[mode]
    tries = [full] + ([[o] for o in full] + [[]] if mode == "sync-split" else [])
    first_error = ""
    for over in tries:
        try:
            load_config(recipe, [*common, *over])
        except ConfigError as e:
            lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()] or [str(e)]
            first_error = first_error or "; ".join(lines)
            continue
        if over == full:
            return over, ""
        return over, (f"config lacks {' '.join(o for o in full if o not in over)} ({first_error}): "
                      f"ran {' '.join(over) or 'the recipe as is'} (today's sync-split)")
    return None, f"skipped: this checkout's config cannot run it ({first_error})"


def summarize(run_dir: Path, samples_per_prompt: int) -> dict:
    from forkrl.orchestrator.metrics import read_metrics

    path = run_dir / "metrics.jsonl"
    rows = read_metrics(path) if path.exists() else []
    steps = [r for r in rows if "time/step" in r]
    timed = steps[1:] if len(steps) > 1 else steps  # the first step carries warm-up (compilation, caches)

    def med(key: str) -> float:
        vals = [r[key] for r in timed if key in r]
        return statistics.median(vals) if vals else NAN

    evals = [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
    s = step_stats([r["time/step"] for r in timed])
    busy = {}
    for role in ROLES:
        vals = [r[f"role/{role}_busy_frac"] for r in timed if f"role/{role}_busy_frac" in r]
        busy[role] = statistics.fmean(vals) if vals else NAN
    return {
        "steps": len(steps), "s_step": s["median"], "s_min": s["min"], "s_max": s["max"],
        "steps_per_h": 3600 / s["median"] if s["median"] == s["median"] else NAN,
        "gen": med("time/generate"), "train": med("time/train"), "busy": busy,
        "samples": sum(r.get("step/groups_trained", 0) for r in steps) * samples_per_prompt,
        "acc0": evals[0][1] if evals and evals[0][0] == 0 else NAN,
        "acc_end": evals[-1][1] if evals else NAN, "acc_end_step": evals[-1][0] if evals else None,
        "staleness": med("staleness/mean"),
    }


def fmt(x: float, spec: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def verdict(ok: bool, value: float) -> str:
    return "n/a" if value != value else ("met" if ok else "not met")


def report(res: dict[str, dict], notes: dict[str, str], args, wall: float, n_eval: int) -> list[str]:
    lines = [
        "# Training modes on one machine: sync-split (padded learner, and packed) vs sync-colocated vs async-split",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs. Recipe {os.path.relpath(args.recipe, ROOT)}"
        + (f" with {' '.join(args.override)}" if args.override else "")
        + f"; same seed and steps per mode, run one after another (bench wall {wall / 60:.1f} min). "
        "Seconds per step: median of the steps after the first (`time/step`); utilisation: mean "
        "`role/*_busy_frac` over the same steps.",
        "",
        "| mode | steps | s/step median | min | max | steps/h | gen s | train s | rollout busy | learner busy "
        "| verifier busy | samples trained | eval acc start | eval acc end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        if mode not in res:
            continue
        r = res[mode]
        b = r["busy"]
        lines.append(f"| {mode} | {r['steps']} | {fmt(r['s_step'])} | {fmt(r['s_min'])} | {fmt(r['s_max'])} | "
                     f"{fmt(r['steps_per_h'], '.1f')} | {fmt(r['gen'])} | {fmt(r['train'])} | "
                     f"{fmt(b['rollout'])} | {fmt(b['learner'])} | {fmt(b['verifier'])} | {r['samples']:.0f} | "
                     f"{fmt(r['acc0'], '.3f')} | {fmt(r['acc_end'], '.3f')} |")
    lines.append("")
    base = res.get("sync-split")
    if base and base["s_step"] == base["s_step"]:
        gen, train = base["gen"], base["train"]
        ideal = (gen + train) / max(gen, train) if gen == gen and train == train else NAN
        lines.append(f"Ideal overlap from sync-split: (gen {fmt(gen)} + train {fmt(train)}) / max = "
                     f"{fmt(ideal)}x -> ideal async {fmt(base['steps_per_h'] * ideal, '.1f')} steps/h, "
                     f"target 0.9x = {fmt(0.9 * base['steps_per_h'] * ideal, '.1f')} steps/h.")
        if "sync-colocated" in res:
            c = res["sync-colocated"]["s_step"] / base["s_step"]
            lines.append(f"- sync-colocated / sync-split seconds per step: {fmt(c)} (target <= 0.60: "
                         f"{verdict(c <= 0.6, c)}).")
            padded = res.get("sync-split-padded")
            if padded and padded["s_step"] == padded["s_step"]:
                c0 = res["sync-colocated"]["s_step"] / padded["s_step"]
                lines.append(f"- sync-colocated / sync-split-padded (the lock-step loop before packing) seconds "
                             f"per step: {fmt(c0)} (target <= 0.60: {verdict(c0 <= 0.6, c0)}).")
        if "async-split" in res:
            a = res["async-split"]["steps_per_h"]
            target = 0.9 * base["steps_per_h"] * ideal
            lines.append(f"- async-split: {fmt(a, '.1f')} steps/h = {fmt(a / base['steps_per_h'])}x sync-split, "
                         f"{fmt(a / (base['steps_per_h'] * ideal))} of the ideal (target >= 0.90: "
                         f"{verdict(a >= target, a - target)}); mean staleness "
                         f"{fmt(res['async-split']['staleness'])}.")
            lines.append(f"- held-out accuracy at the end: sync-split {fmt(base['acc_end'], '.3f')}, async-split "
                         f"{fmt(res['async-split']['acc_end'], '.3f')} ({n_eval} prompts: one prompt is "
                         f"{1 / n_eval:.3f}; samples trained {base['samples']:.0f} vs "
                         f"{res['async-split']['samples']:.0f}).")
    for mode, note in notes.items():
        if note:
            lines.append(f"- {mode}: {note}")
    return lines


def plot(res: dict[str, dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if m in res]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    med = [res[m]["s_step"] for m in modes]
    err = [[max(0.0, res[m]["s_step"] - res[m]["s_min"]) for m in modes],
           [max(0.0, res[m]["s_max"] - res[m]["s_step"]) for m in modes]]
    ax1.bar(modes, med, yerr=err, capsize=4, color=["tab:gray", "tab:blue", "tab:green"][:len(modes)])
    for i, m in enumerate(modes):
        ax1.text(i, med[i], f" {fmt(med[i], '.1f')}s\n {fmt(res[m]['steps_per_h'], '.0f')}/h",
                 ha="center", va="bottom", fontsize=8)
    for i, m in enumerate(modes):
        if med[i] != med[i]:
            ax1.text(i, 0, "no steps", ha="center", va="bottom", fontsize=8)
    top = max([res[m]["s_max"] for m in modes if res[m]["s_max"] == res[m]["s_max"]] or [1.0])
    ax1.set(title="seconds per step (median, min-max)", ylabel="s", ylim=(0, 1.25 * top))
    width = 0.8 / len(ROLES)
    have = False
    for j, role in enumerate(ROLES):
        vals = [res[m]["busy"][role] for m in modes]
        have |= any(v == v for v in vals)
        ax2.bar([i + (j - 1) * width for i in range(len(modes))], [0 if v != v else v for v in vals], width,
                label=role)
    ax2.set_xticks(range(len(modes)), modes)
    ax2.set(title="fraction of wall time each role is busy", ylim=(0, 1.05))
    if not have:
        ax2.text(0.5, 0.5, "no role/*_busy_frac in these runs' metrics", ha="center", transform=ax2.transAxes)
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="recipes/default.yaml")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--steps", type=int, default=None, help="trainer.steps for every mode (default: the recipe's)")
    ap.add_argument("--override", action="append", default=[], help="key=value applied to every mode")
    ap.add_argument("--out", default="runs/compare_modes", help="run dirs and logs")
    ap.add_argument("--results-dir", default="docs/results", help="where compare_modes.{md,png} go")
    ap.add_argument("--skip-existing", action="store_true", help="reuse a mode's finished run dir")
    ap.add_argument("--job-timeout", type=float, default=4 * 3600)
    args = ap.parse_args()
    args.recipe = recipe_path(args.recipe)

    from forkrl.orchestrator.config import load_config

    common = [*([f"trainer.steps={args.steps}"] if args.steps else []), "checkpoint.save_hf_at_end=false",
              *args.override]
    cfg = load_config(args.recipe, common)
    out = (ROOT / args.out).resolve()
    res: dict[str, dict] = {}
    notes: dict[str, str] = {}
    t_all = time.perf_counter()
    for mode in args.modes:
        over, note = mode_overrides(args.recipe, mode, common)
        notes[mode] = note
        if note:
            print(f"{mode}: {note}", flush=True)
        if over is None:
            continue
        run_dir = out / mode
        done = (run_dir / "metrics.jsonl").exists() and \
            summarize(run_dir, cfg.rollout.samples_per_prompt)["steps"] >= cfg.trainer.steps
        if not (args.skip_existing and done):
            if (run_dir / "metrics.jsonl").exists():
                (run_dir / "metrics.jsonl").unlink()  # a fresh run, not a continuation of an old one
            rc, sec = run_forkrl_job(args.recipe, run_dir, [*common, *over], out / f"{mode}.log",
                                     timeout_s=args.job_timeout)
            print(f"  {mode}: exit {rc} in {sec:.0f}s", flush=True)
            if rc != 0:
                notes[mode] = (note + "; " if note else "") + f"exit {rc}: see {out / (mode + '.log')}"
        res[mode] = summarize(run_dir, cfg.rollout.samples_per_prompt)

    lines = report(res, notes, args, time.perf_counter() - t_all, cfg.eval.num_prompts)
    print("\n" + "\n".join(lines))
    dest = (ROOT / args.results_dir).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "compare_modes.md").write_text("\n".join(lines) + "\n")
    if res:
        plot(res, dest / "compare_modes.png")
    print(f"\nwrote {dest}/compare_modes.md" + (" and compare_modes.png" if res else ""))


if __name__ == "__main__":
    main()
