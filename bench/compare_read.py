"""Reading the comparison's runs (bench/compare_methods.py): metrics rows, per-problem evaluations,
one run's figures, and the archive under docs/results/ that lets the report regenerate without the
run directories.

A run directory (a live one under --out, or its archived copy under docs/results/compare_runs/<run>/)
holds ``metrics.jsonl`` (one row per step) and per-problem evaluations: ``eval_problems.jsonl``
({step, prompt_id, greedy (bool), and n / c when the trainer logs the pass@k samples' counts}), or
failing that the ``kind: eval`` rows of ``samples.jsonl`` (one greedy answer per problem when
``logging.sample_prompts`` covers ``eval.num_prompts``, as recipes/compare/base.yaml sets).
"""
from __future__ import annotations

import json
import math
import re
import shutil
import statistics
from pathlib import Path

from compare_stats import per_problem_pass_at_k
from forkrl.orchestrator.entropy_law import predict_final
from forkrl.orchestrator.tracking import tracking_stats

LAST_N = 3  # "entropy at the end" = mean policy entropy over the last LAST_N steps (one step is noisy)
# What each control acted on, per step: (metric, label) -> the report's "tokens touched per step"
TOUCHED = (("train/frac_clip_cov_zeroed", "zeroed"), ("train/frac_kl_cov_penalised", "penalised"),
           ("train/frac_forking_kept", "PG kept"), ("train/frac_sent_high", "2b"), ("train/frac_sent_low", "0.5b"))
MECH = "train/mechanism_"  # learner.mechanism's figures as the trainer logs them


def rows_of(run_dir: Path) -> list[dict]:
    from forkrl.orchestrator.metrics import read_metrics

    p = Path(run_dir) / "metrics.jsonl"
    return read_metrics(p) if p.exists() else []


def last_step(run_dir: Path) -> int:
    return max((r["step"] for r in rows_of(run_dir)), default=0)


def _finite(r: dict, key: str) -> bool:
    return key in r and isinstance(r[key], (int, float)) and math.isfinite(r[key])


def step_entropy(rows: list[dict], upto: int | None = None) -> dict[int, float]:
    """{step: policy entropy} of the training rows up to ``upto``."""
    return {r["step"]: r["policy/entropy"] for r in rows
            if _finite(r, "policy/entropy") and (upto is None or r["step"] <= upto)}


def end_entropy(rows: list[dict], upto: int | None = None) -> float:
    vals = [h for _, h in sorted(step_entropy(rows, upto).items())][-LAST_N:]
    return sum(vals) / len(vals) if vals else math.nan


def eval_problems(run_dir: Path) -> dict[int, dict[str, dict]]:
    """{step: {prompt_id: {"greedy": 0/1, and "n", "c" when logged}}} of a run's evaluations."""
    run_dir = Path(run_dir)
    out: dict[int, dict[str, dict]] = {}
    path = run_dir / "eval_problems.jsonl"
    if path.exists():
        for i, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                r = json.loads(line)
                if "step" not in r or "prompt_id" not in r:
                    raise ValueError(f"{path}: row {i + 1} lacks step or prompt_id")
                out.setdefault(int(r["step"]), {})[str(r["prompt_id"])] = {
                    k: int(r[k]) for k in ("greedy", "n", "c") if k in r}
        return out
    samples = run_dir / "samples.jsonl"
    if samples.exists():
        from forkrl.orchestrator.samples import read_samples

        for r in read_samples(samples):
            if r.get("kind") == "eval" and r.get("correct") is not None:
                out.setdefault(int(r["step"]), {})[str(r["prompt_id"])] = {"greedy": int(bool(r["correct"]))}
    return out


def scores(problems: dict[str, dict], key: str) -> dict[str, float]:
    """Per-problem score: key "greedy" (0/1) or "pass@k" (the unbiased estimate from n, c)."""
    if key == "greedy":
        return {p: float(v["greedy"]) for p, v in problems.items() if "greedy" in v}
    k = int(key.split("@")[1])
    have = {p: v for p, v in problems.items() if "n" in v and "c" in v and v["n"] >= k}
    return dict(zip(have, per_problem_pass_at_k([(v["n"], v["c"]) for v in have.values()], k)))


def _pearson(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 3:
        return math.nan
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


def mechanism_summary(rows: list[dict]) -> dict[str, float]:
    """Across the steps that measured it: Pearson correlation of the entropy change with cov (the
    paper predicts it negative), the share of steps whose signs agree (dH = -sign cov), the count."""
    pts = [(r[MECH + "entropy_change"], r[MECH + "cov"], r.get(MECH + "signs_agree", math.nan)) for r in rows
           if _finite(r, MECH + "entropy_change") and _finite(r, MECH + "cov")]
    agree = [a for _, _, a in pts if math.isfinite(a)]
    return {"mech_steps": len(pts), "mech_corr": _pearson([p[0] for p in pts], [p[1] for p in pts]),
            "mech_agree": sum(agree) / len(agree) if agree else math.nan}


def summarise(run_dir: Path, wall_s: float | None, upto: int | None = None) -> dict:
    """One run's figures, from its rows up to step `upto` (the horizon: a run stopped past it, as GRPO
    can be when it ran before the horizon was fixed, is read at the horizon like every other run)."""
    rows = [r for r in rows_of(run_dir) if upto is None or r["step"] <= upto]
    evals = [r for r in rows if "eval/accuracy" in r]
    train_rows = [r for r in rows if "time/step" in r]
    steps = max((r["step"] for r in train_rows), default=0)
    last = evals[-1] if evals else {}

    def col(key: str, rs=evals) -> list[float]:
        return [r[key] for r in rs if _finite(r, key)]

    def mean(key: str) -> float:
        v = col(key, train_rows)
        return sum(v) / len(v) if v else math.nan

    step_s = [r["time/step"] for r in train_rows if r["step"] > 1] or [r["time/step"] for r in train_rows]
    tok = mean("train/train_loss_tokens")
    acted = [f"{label} {mean(key) * tok:.0f}" for key, label in TOUCHED if not math.isnan(mean(key))]
    h_start = next((r["policy/entropy"] for r in train_rows if _finite(r, "policy/entropy")), math.nan)
    law = predict_final([(r["step"], r.get("policy/entropy", math.nan), r["eval/accuracy"]) for r in evals])
    track_rows = [r for r in train_rows if _finite(r, "entropy_control/target") and _finite(r, "policy/entropy")]
    track = tracking_stats([r["step"] for r in track_rows], [r["policy/entropy"] for r in track_rows],
                           [r["entropy_control/target"] for r in track_rows]) if track_rows else None
    actuators = sorted({k for r in train_rows for k in r if k.startswith("entropy_control/")
                        and k not in ("entropy_control/target", "entropy_control/error")})
    h_end = end_entropy(rows)
    return {
        "steps": steps, "h_start": h_start, "h_end": h_end, "h_ratio0": h_end / h_start if h_start else math.nan,
        "acc0": evals[0].get("eval/accuracy", math.nan) if evals and evals[0]["step"] == 0 else math.nan,
        "p8_0": evals[0].get("eval/pass@8", math.nan) if evals and evals[0]["step"] == 0 else math.nan,
        "acc_end": last.get("eval/accuracy", math.nan), "acc_best": max(col("eval/accuracy"), default=math.nan),
        "p1_end": last.get("eval/pass@1", math.nan),
        "p8_end": last.get("eval/pass@8", math.nan), "p8_best": max(col("eval/pass@8"), default=math.nan),
        "law": law, "track": track,
        "s_step": statistics.median(step_s) if step_s else math.nan,
        "wall_min": wall_s / 60 if wall_s else math.nan,
        "tokens": tok, "acted": ", ".join(acted) or "-",
        "clipfrac": mean("train/clipfrac_high") + mean("train/clipfrac_low")
        if not math.isnan(mean("train/clipfrac_high")) else math.nan,
        "kl_old": mean("train/kl_old_k3"),
        "actuator_end": {k.split("/", 1)[1]: last_value(train_rows, k) for k in actuators},
        **mechanism_summary(train_rows),
        "curves": {k: [(r["step"], r[k]) for r in rows if _finite(r, k)]
                   for k in ("policy/entropy", "eval/accuracy", "eval/pass@8", "entropy_control/target",
                             *actuators)},
    }


def last_value(rows: list[dict], key: str) -> float:
    return next((r[key] for r in reversed(rows) if _finite(r, key)), math.nan)


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


def finished(res: dict, horizon) -> dict:
    """The runs that reached the horizon (all of them while none is fixed). A run short of it is
    listed in the table as unfinished and left out of the claims and the plot: its end figures are
    from an earlier step than the others'."""
    return {k: v for k, v in res.items() if not horizon or v["steps"] >= horizon}


def discover(out: Path, archive: Path, methods: list[str]) -> dict[tuple[str, int], Path]:
    """{(method, seed): run dir}: the live run under ``out`` where it has rows, else its archived copy."""
    found: dict[tuple[str, int], Path] = {}
    for root in (archive, out):  # live runs last: they replace their (older) archived copies
        for method in methods:
            for d in sorted(Path(root).glob(f"{method}_s*")):
                if re.fullmatch(rf"{method}_s\d+", d.name) and rows_of(d):
                    found[(method, int(d.name.rsplit("_s", 1)[1]))] = d
    return found


def archive_run(run_dir: Path, dest: Path) -> Path:
    """Copy a run's metrics.jsonl and its per-problem evaluations (eval_problems.jsonl, small) to
    ``dest`` (docs/results/compare_runs/<run>/): what the report reads, without checkpoints or samples."""
    run_dir, dest = Path(run_dir), Path(dest)
    if run_dir.resolve() == dest.resolve():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "metrics.jsonl", dest / "metrics.jsonl")
    lines = [json.dumps({"step": step, "prompt_id": pid, **v})
             for step, probs in sorted(eval_problems(run_dir).items()) for pid, v in sorted(probs.items())]
    (dest / "eval_problems.jsonl").write_text("".join(line + "\n" for line in lines))
    return dest
