"""The long entropy-control comparison of issue 11: one command runs every method and writes the report.

Methods (recipes/compare/<method>.yaml, all on recipes/compare/base.yaml): grpo, dapo_clip_higher,
clip_cov, kl_cov, forking, sent, composed, setpoint. They run one after the other through the real CLI
(`python -m forkrl.orchestrator.cli train`; on one machine they would share its cores anyway):

1. Horizon. GRPO (seed 0) runs to --min-steps, then on in chunks of eval.every_steps (resuming its
   checkpoint) until its policy entropy, averaged over the chunk's last 3 steps, is below
   --until-entropy, or --max-steps. The step count it stops at is every run's horizon.
2. Every other method, seed 0, to the horizon.
3. Second seed (trainer.seed = --second-seed-value) for GRPO and the best control: the control with
   the highest held-out pass@8 at the end of step 2, unless --second-seed names the methods.
4. Report: <report-dir>/compare_methods.md (tables) and compare_methods.png (policy entropy, greedy
   pass@1, pass@8 per method over steps); the table is printed too.

    python bench/compare_methods.py --resume --min-steps 40  # the comparison as run (~5 h, below)
    python bench/compare_methods.py --report-only            # rewrite the report from the runs so far
    python bench/compare_methods.py --out runs/cmp_smoke --report-dir runs/cmp_smoke \
        --min-steps 2 --max-steps 2 --override trainer.prompts_per_step=2 ...   # a smoke test

Wall time, measured (GRPO seed 0 on the fixed verifier, 2-core CPU, packed learner): 35 s per training
step on average (25-73 s: early steps with long responses are slow, ~25 s once responses shorten), and
about 1-1.5 min per evaluation (64 greedy + 64 x 8 sampled generations): ~30 min per 40-step run, ~5 h
for the ten runs at a 40-step horizon. More on a loaded machine, and more for the controls that keep
responses long. --min-steps 40 is what has been run (GRPO's entropy, mean of steps 38-40: 0.209); the
default of 60 stays for a machine with the time.

Runs live in <out>/<method>_s<seed>/ (metrics.jsonl, checkpoints), their logs in <out>/logs/, and the
bench's own state (horizon, second-seed pick, wall seconds per run) in <out>/state.json. Without
--resume an existing unfinished run directory is an error (nothing is deleted); with it, finished runs are
skipped and unfinished ones continue from their last checkpoint (`forkrl train --resume`).
--base-recipe runs the comparison on another task: the recipes are copied to <out>/recipes/ with
base.yaml's own base replaced (e.g. recipes/default.yaml while recipes/headroom.yaml does not exist).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchlib import ROOT, run_forkrl_job

METHODS = ["grpo", "dapo_clip_higher", "clip_cov", "kl_cov", "forking", "sent", "composed", "setpoint"]
BASELINE = "grpo"
FORKING_CONTROL = "dapo_clip_higher"
LAST_N = 3  # "entropy at the end" = mean policy entropy over the last LAST_N steps (one step is noisy)
_STARTED: set[str] = set()  # runs this invocation started: continuing them (the horizon's chunks) needs no --resume


# ---- runs ------------------------------------------------------------------------------------------

def run_name(method: str, seed: int) -> str:
    return f"{method}_s{seed}"


def load_state(out: Path) -> dict:
    p = out / "state.json"
    return json.loads(p.read_text()) if p.exists() else {"horizon": None, "second_seed": None, "runs": {}}


def save_state(out: Path, state: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(out / "state.json")


def rows_of(run_dir: Path) -> list[dict]:
    from forkrl.orchestrator.metrics import read_metrics

    p = run_dir / "metrics.jsonl"
    return read_metrics(p) if p.exists() else []


def last_step(run_dir: Path) -> int:
    return max((r["step"] for r in rows_of(run_dir)), default=0)


def end_entropy(rows: list[dict], upto: int | None = None) -> float:
    vals = [r["policy/entropy"] for r in rows if "policy/entropy" in r and (upto is None or r["step"] <= upto)]
    vals = [v for v in vals if not math.isnan(v)][-LAST_N:]
    return sum(vals) / len(vals) if vals else float("nan")


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
    if (method, seed) != (BASELINE, args.seed):
        # Step 0 evaluates the same base weights with the same fixed eval seeds in every run: GRPO's
        # first run measures it once (~3 min of 128 x 9 generations), the report shares it.
        overrides.append("eval.at_start=false")
    log = out / "logs" / f"{name}.{rec['attempts'] + 1}.log"
    cmd_overrides = overrides + (["--resume"] if resume else [])
    print(f"  {name}: {'resume from step ' + str(done) if resume else 'start'} -> {steps} steps "
          f"(log {log})", flush=True)
    _STARTED.add(name)
    rc, wall = run_forkrl_job(str(recipes / f"{method}.yaml"), run_dir, cmd_overrides, log)
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
    ck = run_dir / "checkpoints"
    if ck.is_dir():
        shutil.rmtree(ck)


def find_horizon(args, recipes: Path, state: dict, chunk: int) -> int:
    """Run GRPO seed 0 until its entropy is below --until-entropy (>= --min-steps, <= --max-steps)."""
    if state.get("horizon"):
        h = state["horizon"]
        print(f"horizon: {h} steps (from state.json: {state.get('horizon_reason')})", flush=True)
        train(args, recipes, state, BASELINE, args.seed, h)  # finished -> skipped
        return h
    steps = args.min_steps
    while True:
        run_dir = train(args, recipes, state, BASELINE, args.seed, steps)
        h_end = end_entropy(rows_of(run_dir), upto=steps)
        if h_end < args.until_entropy:
            reason = f"GRPO entropy {h_end:.3f} < {args.until_entropy} at step {steps}"
            break
        if steps >= args.max_steps:
            reason = f"GRPO entropy {h_end:.3f} still >= {args.until_entropy} at --max-steps {steps}"
            break
        print(f"  grpo entropy {h_end:.3f} >= {args.until_entropy} at step {steps}: on", flush=True)
        steps = min(steps + chunk, args.max_steps)
    state["horizon"], state["horizon_reason"] = steps, reason
    save_state(Path(args.out), state)
    print(f"horizon: {steps} steps ({reason})", flush=True)
    return steps


# ---- report ----------------------------------------------------------------------------------------

def _fmt(x: float, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def summarise(run_dir: Path, wall_s: float | None, upto: int | None = None) -> dict:
    """One run's figures, from its rows up to step `upto` (the horizon: a run stopped past it, as GRPO
    can be when it ran before the horizon was fixed, is read at the horizon like every other run)."""
    rows = [r for r in rows_of(run_dir) if upto is None or r["step"] <= upto]
    evals = [r for r in rows if "eval/accuracy" in r]
    train_rows = [r for r in rows if "time/step" in r]
    steps = max((r["step"] for r in train_rows), default=0)
    last = evals[-1] if evals else {}

    def col(key: str, rs=evals) -> list[float]:
        return [r[key] for r in rs if key in r and not math.isnan(r[key])]

    def mean(key: str) -> float:
        v = col(key, train_rows)
        return sum(v) / len(v) if v else float("nan")

    step_s = [r["time/step"] for r in train_rows if r["step"] > 1] or [r["time/step"] for r in train_rows]
    tok = mean("train/train_loss_tokens")
    acted = []
    for key, label in (("train/frac_clip_cov_zeroed", "zeroed"), ("train/frac_kl_cov_penalised", "penalised"),
                       ("train/frac_forking_kept", "PG kept"), ("train/frac_sent_high", "2b"),
                       ("train/frac_sent_low", "0.5b")):
        f = mean(key)
        if not math.isnan(f):
            acted.append(f"{label} {f * tok:.0f}")
    return {
        "steps": steps,
        "h_start": next((r["policy/entropy"] for r in train_rows if "policy/entropy" in r), float("nan")),
        "h_end": end_entropy(rows),
        "acc0": evals[0].get("eval/accuracy", float("nan")) if evals and evals[0]["step"] == 0 else float("nan"),
        "p8_0": evals[0].get("eval/pass@8", float("nan")) if evals and evals[0]["step"] == 0 else float("nan"),
        "acc_end": last.get("eval/accuracy", float("nan")), "acc_best": max(col("eval/accuracy"), default=float("nan")),
        "p1_end": last.get("eval/pass@1", float("nan")),
        "p8_end": last.get("eval/pass@8", float("nan")), "p8_best": max(col("eval/pass@8"), default=float("nan")),
        "ceiling": last.get("entropy_law/ceiling", float("nan")),
        "s_step": statistics.median(step_s) if step_s else float("nan"),
        "wall_min": wall_s / 60 if wall_s else float("nan"),
        "tokens": tok, "acted": ", ".join(acted) or "-",
        "clipfrac": mean("train/clipfrac_high") + mean("train/clipfrac_low")
        if not math.isnan(mean("train/clipfrac_high")) else float("nan"),
        "kl_old": mean("train/kl_old_k3"),
        "actuator": last.get("entropy_control/actuator", float("nan")),
        "curves": {k: [(r["step"], r[k]) for r in rows if k in r and not math.isnan(r[k])]
                   for k in ("policy/entropy", "eval/accuracy", "eval/pass@8")},
    }


def share_step0(res: dict, base: dict | None) -> None:
    """Give every run without its own step-0 evaluation the baseline's (the same base weights and eval
    seeds): its step-0 figures, the first point of its curves, and its "best" over the run."""
    if not base or math.isnan(base["acc0"]):
        return
    for s in res.values():
        if not math.isnan(s["acc0"]):
            continue
        s["acc0"], s["p8_0"] = base["acc0"], base["p8_0"]
        for key, first in (("eval/accuracy", base["acc0"]), ("eval/pass@8", base["p8_0"])):
            if not math.isnan(first) and (not s["curves"][key] or s["curves"][key][0][0] > 0):
                s["curves"][key].insert(0, (0, first))
        s["acc_best"] = max(s["acc_best"], base["acc0"]) if not math.isnan(s["acc_best"]) else base["acc0"]
        s["p8_best"] = max(s["p8_best"], base["p8_0"]) if not math.isnan(s["p8_best"]) else base["p8_0"]


CONTROLS = {"clip_cov": "Clip-Cov", "kl_cov": "KL-Cov"}
ENTROPY_CLAIM = 10.0  # the Clip-Cov / KL-Cov paper: entropy at the end over 10x GRPO's


def _seed_mean(res: dict, method: str, key: str) -> float:
    vals = [s[key] for (m, _), s in res.items() if m == method and not math.isnan(s[key])]
    return sum(vals) / len(vals) if vals else float("nan")


def claims(res: dict, num_prompts: int) -> list[str]:
    """The papers' claims, each with the figures that decide it and a verdict (issue 11's report).

    Accuracies are compared against a noise band: 2 standard errors of a proportion over the
    `num_prompts` held-out problems at the reference run's value (GRPO's; for forking, DAPO
    clip-higher's once finished), sqrt(p (1 - p) / n) (for pass@8, whose
    per-problem estimate lies in [0, 1], this bounds its sampling error over problems). A method
    within the band counts as equal: "equal or better" is the papers' claim, not "better". With
    several seeds the seed means are compared."""
    if not any(m == BASELINE for m, _ in res):
        return ["No GRPO run yet: nothing to compare against."]
    g = {k: _seed_mean(res, BASELINE, k) for k in ("h_end", "acc_end", "p8_end", "acc0", "p8_0", "p8_best")}

    def band(p: float) -> float:
        return 2 * math.sqrt(max(p * (1 - p), 0.0) / num_prompts)

    def versus(method: str, key: str, label: str, against: str = BASELINE) -> str:
        v, ref = _seed_mean(res, method, key), _seed_mean(res, against, key)
        if math.isnan(v) or math.isnan(ref):
            return f"{label} not measured"
        d, b = v - ref, band(ref)
        verdict = "better" if d > b else "equal (within noise)" if d >= -b else "worse"
        return f"{label} {v:.3f} vs {ref:.3f} ({d:+.3f}, noise +-{b:.3f}): {verdict}"

    out = [f"GRPO: held-out greedy pass@1 {g['acc0']:.3f} -> {g['acc_end']:.3f}, pass@8 {g['p8_0']:.3f} -> "
           f"best {g['p8_best']:.3f} -> end {g['p8_end']:.3f}, policy entropy at the end {g['h_end']:.3f}."]
    for method, name in CONTROLS.items():
        h = _seed_mean(res, method, "h_end")
        if math.isnan(h):
            out.append(f"{name}: not finished yet (no run at the horizon).")
            continue
        ratio = h / g["h_end"]
        held = "holds" if ratio > ENTROPY_CLAIM else "does not hold"
        out.append(f"{name} keeps entropy over {ENTROPY_CLAIM:g}x GRPO's: {h:.3f} vs {g['h_end']:.3f} = "
                   f"{ratio:.1f}x, {held}; accuracy, equal or better: "
                   f"{versus(method, 'acc_end', 'greedy pass@1')}; {versus(method, 'p8_end', 'pass@8')}.")
    h_start = _seed_mean(res, BASELINE, "h_start")
    if ENTROPY_CLAIM * g["h_end"] > h_start:  # False when either is NaN
        out.append(f"Reach of the ratio claim: {ENTROPY_CLAIM:g}x GRPO's end entropy is "
                   f"{ENTROPY_CLAIM * g['h_end']:.3f}, above the policy's entropy at step 1 ({h_start:.3f}): "
                   "at this horizon only a control that raises entropy above its start could meet it; "
                   "the ratio can be tested only where GRPO's entropy falls much lower.")
    if any(m == "forking" for m, _ in res):
        # Its full-token control is DAPO clip-higher: forking.yaml is that loss with the 80/20 mask.
        full = FORKING_CONTROL if any(m == FORKING_CONTROL for m, _ in res) else BASELINE
        which = ("DAPO clip-higher, the same loss on all tokens" if full == FORKING_CONTROL
                 else "GRPO; DAPO clip-higher, the same loss on all tokens, not finished yet")
        out.append(f"Forking (top 20%) matches or beats full-token updates (against {which}): "
                   f"{versus('forking', 'acc_end', 'greedy pass@1', full)}; "
                   f"{versus('forking', 'p8_end', 'pass@8', full)}.")
    else:
        out.append("Forking: not finished yet (no run at the horizon).")
    if any(m == "setpoint" for m, _ in res):
        p80, p8 = _seed_mean(res, "setpoint", "p8_0"), _seed_mean(res, "setpoint", "p8_end")
        out.append(f"Set-point: pass@8 {p80:.3f} at step 0 -> {p8:.3f} at the end; against GRPO: "
                   f"{versus('setpoint', 'p8_end', 'pass@8')}; {versus('setpoint', 'acc_end', 'greedy pass@1')}.")
    else:
        out.append("Set-point: not finished yet (no run at the horizon).")
    if any(m == "composed" for m, _ in res):
        h = _seed_mean(res, "composed", "h_end")
        out.append(f"Composed (forking mask + KL-Cov + dynamic sampling; no paper claims it): entropy {h:.3f} = "
                   f"{h / g['h_end']:.1f}x GRPO's; against GRPO: {versus('composed', 'acc_end', 'greedy pass@1')}; "
                   f"{versus('composed', 'p8_end', 'pass@8')}.")
    else:
        out.append("Composed: not finished yet (no run at the horizon).")
    return out


def finished(res: dict, horizon) -> dict:
    """The runs that reached the horizon (all of them while none is fixed). A run short of it is
    listed in the table as unfinished and left out of the claims and the plot: its end figures are
    from an earlier step than the others'."""
    return {k: v for k, v in res.items() if not horizon or v["steps"] >= horizon}


def baseline_entropy(done: dict) -> float:
    """Mean end entropy of the baseline's finished runs (the H/GRPO column's denominator); NaN
    without one. Only finished runs: an unfinished GRPO run's entropy is from an earlier step, where
    GRPO's entropy is still higher."""
    hs = [s["h_end"] for (m, _), s in done.items() if m == BASELINE and not math.isnan(s["h_end"])]
    return sum(hs) / len(hs) if hs else float("nan")


def report(args, state: dict, recipes: Path) -> None:
    out = Path(args.out)
    res = {}
    for method in METHODS:
        for run_dir in sorted(out.glob(f"{method}_s*")):
            if not re.fullmatch(rf"{method}_s\d+", run_dir.name) or not rows_of(run_dir):
                continue
            seed = int(run_dir.name.rsplit("_s", 1)[1])
            res[(method, seed)] = summarise(run_dir, state["runs"].get(run_dir.name, {}).get("wall_s"),
                                            upto=state.get("horizon"))
    if not res:
        print("no runs to report yet")
        return
    share_step0(res, res.get((BASELINE, args.seed)))
    horizon = state.get("horizon")
    done = finished(res, horizon)
    base_h = baseline_entropy(done)

    head = ["method", "seed", "steps", "H end", "H/GRPO", "pass@1 end", "pass@1 best", "pass@1 T=1 end",
            "pass@8 end", "pass@8 best", "ceiling", "s/step", "wall min"]
    table = []
    for (m, seed), s in res.items():
        steps = str(s["steps"]) if (m, seed) in done else f"{s['steps']} of {horizon} (unfinished)"
        table.append([m, str(seed), steps, _fmt(s["h_end"]), _fmt(s["h_end"] / base_h, 2),
                      _fmt(s["acc_end"]), _fmt(s["acc_best"]), _fmt(s["p1_end"]), _fmt(s["p8_end"]),
                      _fmt(s["p8_best"]), _fmt(s["ceiling"]), _fmt(s["s_step"], 0), _fmt(s["wall_min"], 0)])
    head2 = ["method", "seed", "loss tokens/step", "control acted on (tokens/step)", "PPO clip frac",
             "KL(old||new) k3", "H step 1"]
    table2 = [[m, str(seed), _fmt(s["tokens"], 0),
               s["acted"] + (f"; beta end {s['actuator']:.2f}" if not math.isnan(s["actuator"]) else ""),
               _fmt(s["clipfrac"]), _fmt(s["kl_old"], 4), _fmt(s["h_start"])] for (m, seed), s in res.items()]

    def md(h, t):
        return "\n".join(["| " + " | ".join(h) + " |", "|" + "---|" * len(h)] + ["| " + " | ".join(r) + " |" for r in t])

    def text(h, t):
        w = [max(len(x) for x in col) for col in zip(h, *t)]
        return "\n".join("  ".join(x.rjust(n) for x, n in zip(r, w)) for r in [h] + t)

    first = next(iter(res.values()))
    try:
        from forkrl.orchestrator.config import load_config

        n_eval = load_config(recipes / f"{BASELINE}.yaml", args.override).eval.num_prompts
        verdicts = claims(done, n_eval)
    except Exception as e:  # as _shape: the report must not fail on a recipe the runs no longer match
        verdicts = [f"claims unavailable: {e}"]
    print("\n" + text(head, table) + "\n\n" + text(head2, table2) + "\n\n" + "\n".join(verdicts))

    png = Path(args.report_dir) / "compare_methods.png"
    plot(done, png)
    cfg = _shape(recipes, args.override)
    doc = Path(args.report_dir) / "compare_methods.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Entropy-control methods side by side (issue 11)",
        "",
        f"Written by `python bench/compare_methods.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}"
        f" from the runs under `{args.out}`. Recipes: `{_shown(recipes)}` ({cfg}).",
        f"Horizon: {state.get('horizon')} steps ({state.get('horizon_reason', 'not fixed yet')}). "
        f"Second seed for: {', '.join(state.get('second_seed') or []) or 'none yet'}.",
        "",
        f"Held-out eval before training (step 0): greedy pass@1 {_fmt(first['acc0'])}, pass@8 {_fmt(first['p8_0'])}.",
        f"H end: mean policy entropy (token-mean, training forward pass) over the last {LAST_N} steps; H/GRPO: "
        "over the GRPO seeds' mean. pass@1: greedy (eval/accuracy); pass@1 T=1 and pass@8: unbiased "
        "estimator from eval.samples_per_prompt samples at the training temperature; best: the best "
        "evaluation of the run, step 0 included. ceiling: the entropy-law fit R = -a exp(H) + b at the last "
        "evaluation (b - a). s/step: median training-step seconds (evaluation excluded); wall min: the "
        "run's whole wall time (start-up, evaluations, curriculum estimates included).",
        "",
        md(head, table),
        "",
        "## The papers' claims, as measured here",
        "",
        *[f"- {v}" for v in verdicts],
        "",
        "## What the controls did",
        "",
        "What each control did, per step (means over the run): tokens it zeroed (Clip-Cov), penalised "
        "(KL-Cov), kept for the PG term (forking), or gave 2 beta / 0.5 beta (SENT); the fraction of "
        "tokens PPO clipped; the k3 KL between the sampling policy and the updated one (off-policy-ness).",
        "",
        md(head2, table2),
        "",
        f"![curves]({png.name})",
        "",
    ]
    doc.write_text("\n".join(lines))
    print(f"\nreport: {doc}\nplot: {png}")


def _shown(path: Path) -> str:
    """A path as the report prints it: relative to the repository when inside it (no machine's home)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _shape(recipes: Path, overrides: list[str]) -> str:
    try:
        from forkrl.orchestrator.config import load_config

        c = load_config(recipes / f"{BASELINE}.yaml", overrides)
        return (f"{c.trainer.prompts_per_step} prompts x {c.rollout.samples_per_prompt} samples, "
                f"{c.learner.mini_batches} mini-batches, micro-batch {c.learner.micro_batch_size}, lr {c.learner.lr:g}, "
                f"<= {c.rollout.max_new_tokens} new tokens, eval every {c.eval.every_steps} steps on "
                f"{c.eval.num_prompts} held-out prompts, model {c.model.path}")
    except Exception as e:  # the report must not fail on a recipe the runs no longer match
        return f"shape unavailable: {e}"


def plot(res: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("policy/entropy", "policy entropy (nats)"), ("eval/accuracy", "held-out pass@1 (greedy)"),
              ("eval/pass@8", "held-out pass@8 (T = train)")]
    colours = {m: plt.cm.tab10(i) for i, m in enumerate(METHODS)}
    for ax, (key, title) in zip(axes, panels):
        for (m, seed), s in res.items():
            pts = s["curves"][key]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colours[m],
                        ls="-" if seed == min(sd for mm, sd in res if mm == m) else "--",
                        marker=None if key == "policy/entropy" else "o", ms=3,
                        label=f"{m}" + (f" s{seed}" if sum(mm == m for mm, _ in res) > 1 else ""))
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


# ---- main ------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/compare_methods", help="run directories, logs and state.json")
    ap.add_argument("--report-dir", default="docs/results", help="where compare_methods.md/.png go")
    ap.add_argument("--recipes-dir", default="recipes/compare")
    ap.add_argument("--base-recipe", help="run on this task instead: replaces base.yaml's base (see doc)")
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--until-entropy", type=float, default=0.3)
    ap.add_argument("--min-steps", type=int, default=60)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="first seed (trainer.seed)")
    ap.add_argument("--second-seed-value", type=int, default=1)
    ap.add_argument("--second-seed", nargs="*", choices=METHODS, default=None,
                    help="methods to rerun with the second seed (default: grpo + the control with the best "
                    "final pass@8; an empty list: none)")
    ap.add_argument("--resume", action="store_true", help="skip finished runs, resume unfinished ones")
    ap.add_argument("--keep-checkpoints", action="store_true",
                    help="keep every run's last checkpoint (~2 GB each); default: delete it once the run is "
                    "finished at the horizon")
    ap.add_argument("--override", action="append", default=[], help="key=value for every run")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if BASELINE not in args.methods:
        sys.exit("the horizon comes from grpo: keep it in --methods")
    out = Path(args.out)
    recipes = prepare_recipes(args)
    state = load_state(out)
    if not args.report_only:
        from forkrl.orchestrator.config import load_config

        for m in args.methods:  # fail in seconds on a bad recipe, not hours into the comparison
            load_config(recipes / f"{m}.yaml", [f"trainer.steps={args.min_steps}", *args.override])
        chunk = load_config(recipes / f"{BASELINE}.yaml", args.override).eval.every_steps or 10
        t0 = time.perf_counter()
        print(f"[1/3] horizon from {BASELINE}, seed {args.seed}", flush=True)
        horizon = find_horizon(args, recipes, state, chunk)
        print(f"[2/3] the other methods, seed {args.seed}, {horizon} steps", flush=True)
        for m in args.methods:
            done = train(args, recipes, state, m, args.seed, horizon)
            if not args.keep_checkpoints:
                prune(done)  # ~2 GB each: ten runs' checkpoints would not fit beside each other
        if args.second_seed is not None:
            second = list(args.second_seed)
        elif state.get("second_seed") is not None:
            second = state["second_seed"]
        else:
            p8 = {m: summarise(out / run_name(m, args.seed), None, upto=horizon)["p8_end"]
                  for m in args.methods if m != BASELINE}
            p8 = {m: v for m, v in p8.items() if not math.isnan(v)}
            best = max(p8, key=p8.get) if p8 else None
            second = [BASELINE] + ([best] if best else [])
            print(f"best control by final pass@8: {best} ({p8.get(best, float('nan')):.3f}); "
                  f"all: {', '.join(f'{m} {v:.3f}' for m, v in p8.items())}", flush=True)
        state["second_seed"] = second
        save_state(out, state)
        print(f"[3/3] seed {args.second_seed_value}: {', '.join(second) or 'none'}", flush=True)
        for m in second:
            done = train(args, recipes, state, m, args.second_seed_value, horizon)
            if not args.keep_checkpoints:
                prune(done)
        if not args.keep_checkpoints:
            for m in args.methods:
                for seed in (args.seed, args.second_seed_value):
                    d = out / run_name(m, seed)
                    if last_step(d) >= horizon:
                        prune(d)
        print(f"all runs done in {time.perf_counter() - t0:.0f}s this invocation", flush=True)
    report(args, state, recipes)


if __name__ == "__main__":
    main()
