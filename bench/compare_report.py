"""The comparison's report (bench/compare_methods.py): the claims with paired intervals, the
tables, the set-point's tracking, the plots. Reads summaries (compare_read.summarise) and per-problem
evaluations; writes docs/results/compare_methods.{md,png} and docs/results/entropy_setpoint.{md,png}.

Every "equal within noise" is a 95% paired bootstrap interval of a difference that holds 0
(compare_stats.paired_bootstrap over the same eval problems and over seeds); a comparison whose
per-problem results were not logged gets no verdict, not a band of one proportion.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from compare_stats import describe, entropy_ratio_curve, paired_bootstrap
from compare_read import scores

BASELINE = "grpo"
ENTROPY_CLAIM = 10.0  # Cui et al.: entropy at GRPO's plateau over 10x GRPO's
LABELS = {"clip_cov": "Clip-Cov (scaled ratio)", "clip_cov_paper": "Clip-Cov (paper's ratio 2e-4)",
          "kl_cov": "KL-Cov (scaled kappa)", "kl_cov_paper": "KL-Cov (paper's kappa 2e-3)",
          "setpoint": "Set-point (target 1.0)", "setpoint_low": "Set-point (target 0.5)",
          "setpoint_peer": "Skywork-OR1 adaptive coefficient (peer rule)", "dapo_clip_higher": "DAPO clip-higher",
          "forking": "Forking (top 20%)", "sent": "SENT", "composed": "Composed"}


def fmt(x, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _eval_step(problems: dict, which: str, upto: int | None) -> int | None:
    """The evaluation a comparison reads: the last one (``end``) or the run's best by mean greedy.
    Step 0 is left out: only the first GRPO run evaluates it (the others share it), so it would
    pair the base model with itself."""
    steps = [s for s in problems if s > 0 and (upto is None or s <= upto) and problems[s]]
    if not steps:
        return None
    if which == "end":
        return max(steps)
    return max(steps, key=lambda s: (sum(scores(problems[s], "greedy").values()) / max(1, len(problems[s])), -s))


def paired_interval(per_problem: dict, method: str, key: str, which: str, upto: int | None = None,
                    n_boot: int = 4000) -> dict | None:
    """The paired bootstrap of method - GRPO on ``key`` (greedy / pass@k) at ``which`` (end / best) over
    the seeds both ran and the problems every one of those runs scored; None when nothing pairs."""
    seeds = sorted({s for m, s in per_problem if m == method} & {s for m, s in per_problem if m == BASELINE})
    cells = []
    for s in seeds:
        pair = []
        for m in (method, BASELINE):
            probs = per_problem[(m, s)]
            step = _eval_step(probs, which, upto)
            pair.append(scores(probs[step], key) if step is not None else {})
        cells.append(pair)
    common = sorted(set.intersection(*(set(x) for pair in cells for x in pair))) if cells else []
    if not common:
        return None
    a = [[pair[0][p] for p in common] for pair in cells]
    b = [[pair[1][p] for p in common] for pair in cells]
    return paired_bootstrap(a, b, n_boot=n_boot)


def _entropy(res: dict, method: str) -> dict[int, dict[int, float]]:
    return {s: dict(v["curves"]["policy/entropy"]) for (m, s), v in res.items() if m == method}


def end_ratios(res: dict, method: str) -> list[float]:
    """Seed-paired H_end / H_end(GRPO, same seed)."""
    return [v["h_end"] / res[(BASELINE, s)]["h_end"] for (m, s), v in sorted(res.items())
            if m == method and (BASELINE, s) in res and res[(BASELINE, s)]["h_end"] > 0]


def claims(res: dict, per_problem: dict, upto: int | None = None, n_boot: int = 4000) -> list[str]:
    """Per method against GRPO: the entropy ratio (seed-paired, with its range), H_end / H_0, and
    greedy pass@1 / pass@8 at the end and at the best evaluation as paired differences with 95% CIs."""
    if not any(m == BASELINE for m, _ in res):
        return ["No GRPO run yet: nothing to compare against."]
    out = []
    for method in [m for m in LABELS if any(mm == m for mm, _ in res)]:
        r = end_ratios(res, method)
        h0 = [v["h_ratio0"] for (m, _), v in sorted(res.items()) if m == method]
        line = [f"{LABELS[method]}:"]
        if r:
            mean = sum(r) / len(r)
            held = ("holds" if min(r) > ENTROPY_CLAIM else "does not hold" if max(r) < ENTROPY_CLAIM
                    else "holds on some seeds only")
            line.append(f"end entropy {mean:.2f}x GRPO's (seed-paired, {len(r)} seed(s), range "
                        f"{min(r):.2f}-{max(r):.2f}; the papers' >{ENTROPY_CLAIM:g}x {held}); "
                        f"H_end/H_0 {', '.join(fmt(x, 2) for x in h0)}.")
        else:
            line.append("no seed paired with a GRPO run.")
        for key, label in (("greedy", "greedy pass@1"), ("pass@8", "pass@8")):
            for which in ("end", "best"):
                ci = paired_interval(per_problem, method, key, which, upto, n_boot)
                line.append(f"{describe(ci, f'{label} at {which}')}." if ci else
                            f"{label} at {which}: no per-problem results to pair (no interval, no verdict).")
        out.append(" ".join(line))
    return out


def md_table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(r) + " |" for r in rows])


def run_table(res: dict, horizon) -> tuple[list[str], list[list[str]]]:
    head = ["method", "seed", "steps", "H step 1", "H end", "H end/H_0", "H/GRPO (same seed)", "pass@1 end",
            "pass@1 best", "pass@8 end", "pass@8 best", "law: fit on steps", "predicted final", "measured",
            "s/step", "wall min"]
    rows = []
    for (m, seed), s in sorted(res.items()):
        g = res.get((BASELINE, seed))
        law = s["law"]
        rows.append([m, str(seed), str(s["steps"]) if not horizon or s["steps"] >= horizon
                     else f"{s['steps']} of {horizon} (unfinished)", fmt(s["h_start"]), fmt(s["h_end"]),
                     fmt(s["h_ratio0"], 2), fmt(s["h_end"] / g["h_end"], 2) if g and g["h_end"] > 0 else "-",
                     fmt(s["acc_end"]), fmt(s["acc_best"]), fmt(s["p8_end"]), fmt(s["p8_best"]),
                     ",".join(map(str, law["fit_steps"])) if law["reason"] is None else f"no fit: {law['reason']}",
                     fmt(law["predicted_final"]), fmt(law["measured_final"]), fmt(s["s_step"], 0),
                     fmt(s["wall_min"], 0)])
    return head, rows


def control_table(res: dict) -> tuple[list[str], list[list[str]]]:
    head = ["method", "seed", "loss tokens/step", "tokens touched/step", "actuator at the end", "PPO clip frac",
            "KL(old||new) k3", "mechanism steps", "corr(dH, cov)", "signs agree"]
    rows = [[m, str(seed), fmt(s["tokens"], 0), s["acted"],
             ", ".join(f"{k} {v:.4g}" for k, v in s["actuator_end"].items()) or "-", fmt(s["clipfrac"]),
             fmt(s["kl_old"], 4), str(s["mech_steps"]), fmt(s["mech_corr"], 2), fmt(s["mech_agree"], 2)]
            for (m, seed), s in sorted(res.items())]
    return head, rows


def tracking_table(res: dict) -> tuple[list[str], list[list[str]]]:
    head = ["method", "seed", "target (end)", "first step in band", "steps scored", "in band", "mean |error|",
            "rms error", "held (>= 80% in +-10%)"]
    rows = []
    for (m, seed), s in sorted(res.items()):
        t = s["track"]
        if t is None:
            continue
        tgt = s["curves"]["entropy_control/target"]
        rows.append([m, str(seed), fmt(tgt[-1][1], 2) if tgt else "-", str(t["first_in_band"]), str(t["scored"]),
                     fmt(t["frac_in_band"], 2), fmt(t["mean_abs_error"]), fmt(t["rms_error"]),
                     "yes" if t["held"] else "no"])
    return head, rows


def plot_compare(res: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    methods = [m for m in LABELS if any(mm == m for mm, _ in res)]
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate([BASELINE, *methods])}
    base = _entropy(res, BASELINE)
    for m in methods:
        curve = entropy_ratio_curve(_entropy(res, m), base)
        if curve:
            x = [c[0] for c in curve]
            axes[0].plot(x, [c[1] for c in curve], color=colours[m], label=m)
            axes[0].fill_between(x, [c[2] for c in curve], [c[3] for c in curve], color=colours[m], alpha=0.2)
    axes[0].axhline(ENTROPY_CLAIM, color="k", ls=":", lw=1)
    axes[0].set(title="entropy / GRPO's (same seed; band: seed range)", xlabel="step", yscale="log")
    for ax, key, title in ((axes[1], "eval/accuracy", "held-out greedy pass@1"),
                           (axes[2], "eval/pass@8", "held-out pass@8")):
        for (m, seed), s in sorted(res.items()):
            pts = s["curves"][key]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colours.get(m, "grey"), marker="o", ms=2,
                        lw=1, alpha=0.8, label=m if seed == min(sd for mm, sd in res if mm == m) else None)
        ax.set(title=title + " (one line per seed)", xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


def plot_setpoint(res: dict, png: Path) -> None:
    """Per set-point run (a column): entropy with the +-10% band around its target and GRPO's (same
    seed) dashed; its actuators (coefficients left, a cascade's command x in [0, 1] right); greedy
    pass@1 and pass@8 over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(k, s) for k, s in sorted(res.items()) if s["track"] is not None]
    if not runs:
        return
    fig, axes = plt.subplots(3, len(runs), figsize=(4.2 * len(runs), 9.5), squeeze=False)
    for j, ((m, seed), s) in enumerate(runs):
        tgt = s["curves"]["entropy_control/target"]
        x, t = [p[0] for p in tgt], [p[1] for p in tgt]
        axes[0][j].fill_between(x, [v * 0.9 for v in t], [v * 1.1 for v in t], color="g", alpha=0.2)
        h = s["curves"]["policy/entropy"]
        axes[0][j].plot([p[0] for p in h], [p[1] for p in h], color="k", lw=1, label=m)
        g = res.get((BASELINE, seed))
        if g:
            gh = g["curves"]["policy/entropy"]
            axes[0][j].plot([p[0] for p in gh], [p[1] for p in gh], color="grey", lw=1, ls="--", label="grpo")
        axes[0][j].set(title=f"{m} s{seed}: entropy, target +-10%", xlabel="step")
        axes[0][j].legend(fontsize=7)
        right = None
        for k in s["actuator_end"]:
            pts = s["curves"][f"entropy_control/{k}"]
            if k == "command":
                right = axes[1][j].twinx()
                right.plot([p[0] for p in pts], [p[1] for p in pts], color="k", lw=1, ls=":", label="command")
                right.set_ylim(0, 1)
                right.legend(fontsize=7, loc="lower right")
            else:
                axes[1][j].plot([p[0] for p in pts], [p[1] for p in pts], label=k)
        axes[1][j].set(title="actuator", xlabel="step")
        axes[1][j].legend(fontsize=7, loc="upper left")
        for key, label in (("eval/accuracy", "greedy pass@1"), ("eval/pass@8", "pass@8")):
            pts = s["curves"][key]
            axes[2][j].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2, label=label)
        axes[2][j].set(title="held-out accuracy", xlabel="step")
        axes[2][j].legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


def write_reports(res: dict, per_problem: dict, report_dir: Path, header: list[str], horizon,
                  n_boot: int = 4000) -> list[str]:
    """Write compare_methods.{md,png} and entropy_setpoint.{md,png}; return the claims."""
    report_dir = Path(report_dir)
    verdicts = claims(res, per_problem, horizon, n_boot)
    plot_compare(res, report_dir / "compare_methods.png")
    h1, t1 = run_table(res, horizon)
    h2, t2 = control_table(res)
    stamp = time.strftime("%Y-%m-%d")
    (report_dir / "compare_methods.md").write_text("\n".join([
        "# Entropy-control methods side by side (issue 21)", "", *header, "",
        "H step 1: policy entropy at the first step (H_0); H end: mean over the last 3 steps. H/GRPO: over "
        "the GRPO run with the same seed. pass@1: greedy; pass@8: unbiased estimator from "
        "eval.samples_per_prompt samples at the training temperature; best: the best evaluation, step 0 "
        "included. law: R = -a exp(H) + b fitted on the first third of the run's evaluations only (the "
        "steps listed), predicting the final greedy pass@1 from the final entropy.", "",
        md_table(h1, t1), "", "## Against GRPO, with paired 95% intervals", "",
        *[f"- {v}" for v in verdicts], "", "## What the controls did, and the mechanism", "",
        "Tokens touched per step: zeroed (Clip-Cov), penalised (KL-Cov), kept for the PG term (forking), "
        "2 beta / 0.5 beta (SENT). corr(dH, cov): Pearson correlation across the measured steps of the "
        "entropy change of a step and the covariance of token log-prob and advantage on its batch "
        "(learner/mechanism.py; the paper predicts it negative); signs agree: share of those steps with "
        "sign(dH) = -sign(cov).", "", md_table(h2, t2), "", "![curves](compare_methods.png)", "",
        f"Written {stamp}."]))
    h3, t3 = tracking_table(res)
    if t3:
        plot_setpoint(res, report_dir / "entropy_setpoint.png")
        lines = [v for v in verdicts if v.startswith(("Set-point", "Skywork"))]
        (report_dir / "entropy_setpoint.md").write_text("\n".join([
            "# Entropy held at a set-point (issue 21)", "", *header, "",
            "Tracking, from the first step within +-10% of the target on (orchestrator/tracking.py).", "",
            md_table(h3, t3), "", *[f"- {v}" for v in lines], "", "![set-point](entropy_setpoint.png)", "",
            f"Written {stamp}."]))
    return verdicts
