"""bench/compare_methods.py's verdicts on the papers' claims, and its reading of runs at the horizon.

The expected lines are written out by hand from the figures below: 64 held-out problems, GRPO's
greedy pass@1 0.36 gives a noise band of 2 sqrt(0.36 * 0.64 / 64) = 0.12; its pass@8 0.50 gives
2 sqrt(0.25 / 64) = 0.125."""
import json
import math

from bench_modules import load_bench

cm = load_bench("compare_methods", "benchlib")

NAN = float("nan")


def run(h_end, acc_end, p8_end, acc0=0.16, p8_0=0.33, p8_best=NAN, h_start=NAN):
    return {"h_end": h_end, "acc_end": acc_end, "p8_end": p8_end, "acc0": acc0, "p8_0": p8_0,
            "p8_best": p8_end if p8_best != p8_best else p8_best, "h_start": h_start}


def test_claims_verdicts_written_out():
    res = {
        ("grpo", 0): run(0.2, 0.36, 0.50, p8_best=0.6),
        ("clip_cov", 0): run(2.5, 0.30, 0.70),    # 12.5x; pass@1 -0.06 within 0.12; pass@8 +0.20 better
        ("kl_cov", 0): run(1.0, 0.20, 0.30),      # 5x; pass@1 -0.16 worse; pass@8 -0.20 worse
        ("forking", 0): run(0.3, 0.50, 0.50),     # pass@1 +0.14 better; pass@8 equal
    }
    lines = cm.claims(res, num_prompts=64)
    assert lines == [
        "GRPO: held-out greedy pass@1 0.160 -> 0.360, pass@8 0.330 -> best 0.600 -> end 0.500, "
        "policy entropy at the end 0.200.",
        "Clip-Cov keeps entropy over 10x GRPO's: 2.500 vs 0.200 = 12.5x, holds; accuracy, equal or better: "
        "greedy pass@1 0.300 vs 0.360 (-0.060, noise +-0.120): equal (within noise); "
        "pass@8 0.700 vs 0.500 (+0.200, noise +-0.125): better.",
        "KL-Cov keeps entropy over 10x GRPO's: 1.000 vs 0.200 = 5.0x, does not hold; accuracy, equal or "
        "better: greedy pass@1 0.200 vs 0.360 (-0.160, noise +-0.120): worse; "
        "pass@8 0.300 vs 0.500 (-0.200, noise +-0.125): worse.",
        "Forking (top 20%) matches or beats full-token updates (against GRPO; DAPO clip-higher, the same "
        "loss on all tokens, not finished yet): greedy pass@1 0.500 vs 0.360 (+0.140, noise +-0.120): "
        "better; pass@8 0.500 vs 0.500 (+0.000, noise +-0.125): equal (within noise).",
        "Set-point: not finished yet (no run at the horizon).",
        "Composed: not finished yet (no run at the horizon).",
    ]


def test_claims_average_seeds_and_say_what_is_missing():
    res = {("grpo", 0): run(0.1, 0.30, 0.50), ("grpo", 1): run(0.3, 0.42, 0.50),   # means 0.2, 0.36
           ("setpoint", 0): run(0.8, 0.36, 0.55, p8_0=0.31)}
    lines = cm.claims(res, num_prompts=64)
    assert lines[0].endswith("policy entropy at the end 0.200.")
    assert lines[1:4] == ["Clip-Cov: not finished yet (no run at the horizon).", "KL-Cov: not finished yet (no run at the horizon).", "Forking: not finished yet (no run at the horizon)."]
    assert lines[4] == ("Set-point: pass@8 0.310 at step 0 -> 0.550 at the end; against GRPO: pass@8 0.550 vs "
                        "0.500 (+0.050, noise +-0.125): equal (within noise); greedy pass@1 0.360 vs 0.360 "
                        "(+0.000, noise +-0.120): equal (within noise).")
    assert cm.claims({("clip_cov", 0): run(1, 0.3, 0.5)}, 64) == ["No GRPO run yet: nothing to compare against."]


def test_composed_is_reported_against_grpo():
    res = {("grpo", 0): run(0.2, 0.36, 0.50),
           ("composed", 0): run(1.6, 0.20, 0.45)}   # 8x; pass@1 -0.16 worse; pass@8 -0.05 within 0.125
    assert cm.claims(res, num_prompts=64)[-1] == (
        "Composed (forking mask + KL-Cov + dynamic sampling; no paper claims it): entropy 1.600 = 8.0x "
        "GRPO's; against GRPO: greedy pass@1 0.200 vs 0.360 (-0.160, noise +-0.120): worse; "
        "pass@8 0.450 vs 0.500 (-0.050, noise +-0.125): equal (within noise).")


def test_a_run_past_the_horizon_is_read_at_the_horizon(tmp_path):
    """GRPO ran to step 42 before the horizon (40) was fixed: its end figures are step 40's."""
    rows = [{"step": s, "policy/entropy": e, "time/step": 30.0} for s, e in
            [(38, 0.3), (39, 0.2), (40, 0.1), (41, 5.0), (42, 5.0)]]
    rows[2].update({"eval/accuracy": 0.25, "eval/pass@8": 0.5})
    rows[4].update({"eval/accuracy": 0.75, "eval/pass@8": 0.9})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    at = cm.summarise(tmp_path, None, upto=40)
    assert (at["steps"], at["acc_end"], at["p8_end"]) == (40, 0.25, 0.5)
    assert abs(at["h_end"] - 0.2) < 1e-12          # mean of steps 38-40
    past = cm.summarise(tmp_path, None)
    assert (past["steps"], past["acc_end"]) == (42, 0.75)


def test_runs_without_their_own_step0_share_the_baselines():
    base = {"acc0": 0.15, "p8_0": 0.36, "acc_best": 0.4, "p8_best": 0.6,
            "curves": {"eval/accuracy": [(0, 0.15), (10, 0.4)], "eval/pass@8": [(0, 0.36), (10, 0.6)],
                       "policy/entropy": []}}
    other = {"acc0": NAN, "p8_0": NAN, "acc_best": 0.1, "p8_best": 0.7,
             "curves": {"eval/accuracy": [(10, 0.1)], "eval/pass@8": [(10, 0.7)], "policy/entropy": []}}
    res = {("grpo", 0): base, ("clip_cov", 0): other}
    cm.share_step0(res, base)
    assert (other["acc0"], other["p8_0"], other["acc_best"], other["p8_best"]) == (0.15, 0.36, 0.15, 0.7)
    assert other["curves"]["eval/accuracy"] == [(0, 0.15), (10, 0.1)]
    assert other["curves"]["eval/pass@8"] == [(0, 0.36), (10, 0.7)]
    assert base["curves"]["eval/accuracy"] == [(0, 0.15), (10, 0.4)]   # its own step 0, untouched


def test_runs_short_of_the_horizon_are_left_out_of_the_claims():
    res = {("grpo", 0): dict(run(0.2, 0.36, 0.50), steps=40),
           ("kl_cov", 0): dict(run(3.0, 0.50, 0.70), steps=25),     # stopped at step 25
           ("clip_cov", 0): dict(run(2.5, 0.30, 0.70), steps=41)}
    done = cm.finished(res, 40)
    assert sorted(done) == [("clip_cov", 0), ("grpo", 0)]
    assert cm.finished(res, None) == res                              # no horizon fixed yet: all
    lines = cm.claims(done, num_prompts=64)
    assert lines[2] == "KL-Cov: not finished yet (no run at the horizon)."


def test_h_over_grpo_uses_finished_grpo_runs_only():
    """GRPO seed 1 stopped at step 20 with entropy 0.9 (still falling): the ratio's denominator is
    seed 0's 0.2 alone, not (0.2 + 0.9) / 2 = 0.55."""
    res = {("grpo", 0): dict(run(0.2, 0.36, 0.50), steps=40),
           ("grpo", 1): dict(run(0.9, 0.30, 0.55), steps=20),
           ("clip_cov", 0): dict(run(2.5, 0.30, 0.70), steps=40)}
    done = cm.finished(res, 40)
    assert cm.baseline_entropy(done) == 0.2
    assert math.isnan(cm.baseline_entropy({("clip_cov", 0): res[("clip_cov", 0)]}))


def test_forking_is_judged_against_dapo_clip_higher_once_it_finished():
    """forking.yaml is DAPO clip-higher's loss with the 80/20 mask: that run is its full-token control.
    Bands at DAPO's values: 2 sqrt(0.3 * 0.7 / 64) = 0.115, 2 sqrt(0.8 * 0.2 / 64) = 0.100."""
    res = {("grpo", 0): run(0.2, 0.36, 0.50),
           ("dapo_clip_higher", 0): run(0.25, 0.30, 0.80),
           ("forking", 0): run(0.3, 0.50, 0.50)}
    line = next(x for x in cm.claims(res, num_prompts=64) if x.startswith("Forking"))
    assert line == ("Forking (top 20%) matches or beats full-token updates (against DAPO clip-higher, the "
                    "same loss on all tokens): greedy pass@1 0.500 vs 0.300 (+0.200, noise +-0.115): better; "
                    "pass@8 0.500 vs 0.800 (-0.300, noise +-0.100): worse.")


def test_the_ratio_claims_reach_is_stated_when_10x_grpo_exceeds_the_starting_entropy():
    res = {("grpo", 0): run(0.25, 0.36, 0.50, h_start=2.2), ("grpo", 1): run(0.23, 0.36, 0.50, h_start=2.3),
           ("kl_cov", 0): run(0.75, 0.36, 0.50, h_start=2.25)}   # 0.75 / 0.24 = 3.1x
    lines = cm.claims(res, num_prompts=64)
    assert lines[2].startswith("KL-Cov keeps entropy over 10x GRPO's: 0.750 vs 0.240 = 3.1x, does not hold")
    assert lines[3] == ("Reach of the ratio claim: 10x GRPO's end entropy is 2.400, above the policy's entropy "
                        "at step 1 (2.250): at this horizon only a control that raises entropy above its "
                        "start could meet it; the ratio can be tested only where GRPO's entropy falls much lower.")
    res[("grpo", 0)], res[("grpo", 1)] = run(0.1, 0.36, 0.5, h_start=2.2), run(0.1, 0.36, 0.5, h_start=2.3)
    assert not any(x.startswith("Reach") for x in cm.claims(res, num_prompts=64))   # 1.0 < 2.25
