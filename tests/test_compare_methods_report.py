"""bench/compare_methods.py and its modules (compare_runs, compare_read, compare_report) on small
hand-made metrics files. Every expected figure is worked out in the test's docstring."""
import json
import math

import pytest

from bench_modules import load_bench

cm = load_bench("compare_methods", "benchlib", "compare_stats", "compare_read", "compare_report", "compare_runs")
rd = load_bench("compare_read")
rp = load_bench("compare_report")
runs = load_bench("compare_runs")

NAN = float("nan")


def write_run(d, rows, evals=None):
    """A run dir: metrics.jsonl from `rows`, samples.jsonl with one greedy eval row per (step, problem)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if evals is not None:
        lines = [json.dumps({"step": s, "kind": "eval", "prompt_id": p, "correct": bool(ok)})
                 for s, probs in evals.items() for p, ok in probs.items()]
        lines.append(json.dumps({"step": 1, "kind": "train", "prompt_id": "t0", "correct": True}))
        (d / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_a_run_past_the_horizon_is_read_at_the_horizon(tmp_path):
    """GRPO ran to step 42 before the horizon (40) was fixed: its end figures are step 40's."""
    rows = [{"step": s, "policy/entropy": e, "time/step": 30.0} for s, e in
            [(38, 0.3), (39, 0.2), (40, 0.1), (41, 5.0), (42, 5.0)]]
    rows[2].update({"eval/accuracy": 0.25, "eval/pass@8": 0.5})
    rows[4].update({"eval/accuracy": 0.75, "eval/pass@8": 0.9})
    write_run(tmp_path, rows)
    at = rd.summarise(tmp_path, None, upto=40)
    assert (at["steps"], at["acc_end"], at["p8_end"]) == (40, 0.25, 0.5)
    assert abs(at["h_end"] - 0.2) < 1e-12          # mean of steps 38-40
    past = rd.summarise(tmp_path, None)
    assert (past["steps"], past["acc_end"]) == (42, 0.75)


def test_summary_of_law_mechanism_tracking_and_touched_tokens(tmp_path):
    """Nine evaluations at steps 10..90 with H = 1.9 - 0.1 s/10 ... the first three on R = -0.1 e^H + 0.6,
    so the law fits on steps [10, 20, 30] and predicts the final (H 1.0) as -0.1 e + 0.6 = 0.328172.
    Mechanism on steps 1-4: dH (-0.1, -0.2, 0.1, -0.3), cov (0.2, 0.4, -0.2, 0.6): dH = -cov / 2
    exactly, correlation -1; signs agree on 3 of the 4 logged. Set-point: target 1.0, H 1.5, 1.05,
    0.95, 1.2 from step 1: first in band step 2, 2 of 3 in band. Clip-Cov zeroed 1% of 1000 tokens:
    10 per step."""
    rows = []
    for s in range(1, 91):
        h = 1.9 - 0.1 * (s // 10) if s >= 10 else 2.0
        rows.append({"step": s, "policy/entropy": h, "time/step": 10.0, "train/train_loss_tokens": 1000.0,
                     "train/frac_clip_cov_zeroed": 0.01})
    for s in range(10, 91, 10):
        h = rows[s - 1]["policy/entropy"]
        rows[s - 1]["eval/accuracy"] = -0.1 * math.exp(h) + 0.6 if s <= 30 else 0.9
    for s, (dh, cov, agree) in enumerate([(-0.1, 0.2, 1.0), (-0.2, 0.4, 1.0), (0.1, -0.2, 0.0), (-0.3, 0.6, 1.0)], 1):
        rows[s - 1].update({"train/mechanism_entropy_change": dh, "train/mechanism_cov": cov,
                            "train/mechanism_signs_agree": agree})
    for s, h in enumerate([1.5, 1.05, 0.95, 1.2], 1):
        rows[s - 1].update({"policy/entropy": h, "entropy_control/target": 1.0, "entropy_control/actuator": 0.002 * s})
    s = rd.summarise(write_run(tmp_path, rows), None)
    assert s["law"]["fit_steps"] == [10, 20, 30]
    assert s["law"]["predicted_final"] == pytest.approx(-0.1 * math.e + 0.6)
    assert s["mech_steps"] == 4 and s["mech_corr"] == pytest.approx(-1.0) and s["mech_agree"] == 0.75
    assert (s["track"]["first_in_band"], s["track"]["scored"], s["track"]["in_band"]) == (2, 3, 2)
    assert s["acted"] == "zeroed 10" and s["actuator_end"] == {"actuator": 0.008}


def test_runs_without_their_own_step0_share_the_baselines():
    base = {"acc0": 0.15, "p8_0": 0.36, "acc_best": 0.4, "p8_best": 0.6,
            "curves": {"eval/accuracy": [(0, 0.15), (10, 0.4)], "eval/pass@8": [(0, 0.36), (10, 0.6)],
                       "policy/entropy": []}}
    other = {"acc0": NAN, "p8_0": NAN, "acc_best": 0.1, "p8_best": 0.7,
             "curves": {"eval/accuracy": [(10, 0.1)], "eval/pass@8": [(10, 0.7)], "policy/entropy": []}}
    res = {("grpo", 0): base, ("clip_cov", 0): other}
    rd.share_step0(res, base)
    assert (other["acc0"], other["p8_0"], other["acc_best"], other["p8_best"]) == (0.15, 0.36, 0.15, 0.7)
    assert other["curves"]["eval/accuracy"] == [(0, 0.15), (10, 0.1)]
    assert base["curves"]["eval/accuracy"] == [(0, 0.15), (10, 0.4)]   # its own step 0, untouched


def test_runs_short_of_the_horizon_are_left_out():
    res = {("grpo", 0): {"steps": 150}, ("kl_cov", 0): {"steps": 25}, ("clip_cov", 0): {"steps": 151}}
    assert sorted(rd.finished(res, 150)) == [("clip_cov", 0), ("grpo", 0)]
    assert rd.finished(res, None) == res


def test_planned_runs_are_seed_major_and_one_seed_methods_run_once():
    assert runs.planned_runs(["grpo", "setpoint", "setpoint_low"], [0, 1, 2]) == [
        ("grpo", 0), ("setpoint", 0), ("setpoint_low", 0), ("grpo", 1), ("setpoint", 1), ("grpo", 2), ("setpoint", 2)]


def _res(h_end_by_run):
    return {k: {"h_end": h, "h_ratio0": h / 2.0} for k, h in h_end_by_run.items()}


def test_claims_pair_seeds_and_problems_and_say_when_nothing_pairs():
    """Two seeds, four problems. Clip-Cov solves every problem at its end evaluation, GRPO none: the
    difference is 1 in every cell, interval [1, 1]: better. KL-Cov equals GRPO cell by cell: [0, 0]:
    equal within noise. Entropy: Clip-Cov 0.6 / 0.2 = 3 on seed 0, 0.4 / 0.1 = 4 on seed 1: mean 3.5,
    range 3-4, under 10x on both. No pass@8 counts were logged: no interval, no verdict. GRPO seed 0's
    step-0 evaluation (all solved) is left out of "best": only that run has one."""
    probs = {p: 0 for p in "abcd"}
    per = {("grpo", s): {10: dict(probs), 20: dict(probs)} for s in (0, 1)}
    per.update({("clip_cov", s): {10: dict(probs), 20: {p: 1 for p in "abcd"}} for s in (0, 1)})
    per.update({("kl_cov", s): {10: dict(probs), 20: dict(probs)} for s in (0, 1)})
    per[("grpo", 0)][0] = {p: 1 for p in "abcd"}  # the base model's step 0: not a GRPO result to pair
    per = {k: {st: {p: {"greedy": v} for p, v in pr.items()} for st, pr in d.items()} for k, d in per.items()}
    res = _res({("grpo", 0): 0.2, ("grpo", 1): 0.1, ("clip_cov", 0): 0.6, ("clip_cov", 1): 0.4,
                ("kl_cov", 0): 0.2, ("kl_cov", 1): 0.1})
    lines = rp.claims(res, per, n_boot=200)
    assert lines[0] == (
        "Clip-Cov (scaled ratio): end entropy 3.50x GRPO's (seed-paired, 2 seed(s), range 3.00-4.00; the papers' "
        ">10x does not hold); H_end/H_0 0.30, 0.20. "
        "greedy pass@1 at end +1.000 [95% CI +1.000, +1.000; 2 seed(s) x 4 problems, paired]: better. "
        "greedy pass@1 at best +1.000 [95% CI +1.000, +1.000; 2 seed(s) x 4 problems, paired]: better. "
        "pass@8 at end: no per-problem results to pair (no interval, no verdict). "
        "pass@8 at best: no per-problem results to pair (no interval, no verdict).")
    assert "greedy pass@1 at end +0.000 [95% CI +0.000, +0.000; 2 seed(s) x 4 problems, paired]: " \
           "equal within noise (the interval holds 0)." in lines[1]
    assert rp.claims({("kl_cov", 0): {}}, {}) == ["No GRPO run yet: nothing to compare against."]


def test_eval_problems_round_trip_through_the_archive_and_the_live_run_wins(tmp_path):
    """The run's greedy verdicts come from samples.jsonl's eval rows (the train row is ignored); the
    archive holds them as eval_problems.jsonl and reads back the same. discover prefers the live run."""
    rows = [{"step": 1, "policy/entropy": 1.0, "time/step": 1.0}]
    live = write_run(tmp_path / "out" / "grpo_s0", rows, evals={10: {"p1": 1, "p2": 0}})
    got = rd.eval_problems(live)
    assert got == {10: {"p1": {"greedy": 1}, "p2": {"greedy": 0}}}
    arch = rd.archive_run(live, tmp_path / "archive" / "grpo_s0")
    assert rd.eval_problems(arch) == got and (arch / "metrics.jsonl").read_text() == (live / "metrics.jsonl").read_text()
    write_run(tmp_path / "archive" / "kl_cov_s1", rows)
    found = rd.discover(tmp_path / "out", tmp_path / "archive", ["grpo", "kl_cov"])
    assert found == {("grpo", 0): live, ("kl_cov", 1): tmp_path / "archive" / "kl_cov_s1"}


def test_pass_at_k_scores_from_logged_counts():
    """n 8, c 2: pass@8 = 1; n 8, c 0: 0; a problem without counts is left out."""
    probs = {"a": {"greedy": 1, "n": 8, "c": 2}, "b": {"greedy": 0, "n": 8, "c": 0}, "c": {"greedy": 1}}
    assert rd.scores(probs, "pass@8") == {"a": 1.0, "b": 0.0}
    assert rd.scores(probs, "greedy") == {"a": 1.0, "b": 0.0, "c": 1.0}


def test_reports_are_written_from_archived_runs(tmp_path):
    """End to end from two archived runs: both documents and both plots exist, and the claims name
    the set-point."""
    for name, h, target in (("grpo_s0", 0.2, None), ("setpoint_s0", 1.0, 1.0)):
        rows = [{"step": s, "policy/entropy": h, "time/step": 1.0, **({"entropy_control/target": target,
                 "entropy_control/entropy_coef": 0.001, "entropy_control/command": 0.05} if target else {})}
                for s in range(1, 21)]
        for s in (10, 20):
            rows[s - 1]["eval/accuracy"] = 0.5
        write_run(tmp_path / "a" / name, rows, evals={10: {"p": 1}, 20: {"p": 1, "q": 0}})
    found = rd.discover(tmp_path / "none", tmp_path / "a", ["grpo", "setpoint"])
    res = {k: rd.summarise(d, None) for k, d in found.items()}
    per = {k: rd.eval_problems(d) for k, d in found.items()}
    lines = rp.write_reports(res, per, tmp_path / "r", ["header"], 20, n_boot=50)
    assert lines[0].startswith("Set-point (target 1.0): end entropy 5.00x GRPO's")
    for f in ("compare_methods.md", "compare_methods.png", "entropy_setpoint.md", "entropy_setpoint.png"):
        assert (tmp_path / "r" / f).exists(), f
    assert "| setpoint | 0 | 1.00 | 1 | 20 | 1.00 |" in (tmp_path / "r" / "entropy_setpoint.md").read_text()
