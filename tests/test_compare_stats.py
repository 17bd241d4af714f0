"""bench/compare_stats.py against cases with known answers (written out in each docstring)."""
import math

import pytest

from bench_modules import load_bench

st = load_bench("compare_stats")


def test_degenerate_difference_has_a_zero_width_interval():
    """Every cell differs by exactly 0.25: every replicate's mean is 0.25."""
    a = [[1.0, 0.5, 0.25, 0.75]] * 3
    b = [[0.75, 0.25, 0.0, 0.5]] * 3
    ci = st.paired_bootstrap(a, b, n_boot=200)
    assert ci["diff"] == pytest.approx(0.25) and ci["lo"] == pytest.approx(0.25) and ci["hi"] == pytest.approx(0.25)
    assert (ci["seeds"], ci["problems"]) == (3, 4)
    assert st.verdict(ci) == "better"


def test_large_sample_matches_the_normal_approximation():
    """One seed, 2500 problems, A - B is 1 on half of them and 0 on the others: mean 0.5, sd 0.5,
    standard error 0.5 / sqrt(2500) = 0.01, so the normal 95% interval is 0.5 +- 1.96 x 0.01 =
    [0.4804, 0.5196]; the bootstrap's quantiles land within Monte Carlo error (~0.001) of it."""
    a = [[1.0 if i % 2 else 0.0 for i in range(2500)]]
    b = [[0.0] * 2500]
    ci = st.paired_bootstrap(a, b, n_boot=4000, seed=3)
    assert ci["diff"] == 0.5
    assert ci["lo"] == pytest.approx(0.4804, abs=0.002) and ci["hi"] == pytest.approx(0.5196, abs=0.002)


def test_pairing_cancels_what_both_methods_share():
    """Problems range from all-wrong to all-right in both methods, and A beats B by exactly 0.1 on
    every one: paired, the interval is [0.1, 0.1]; resampling A's and B's problems independently
    (the bug this guards against) would give an interval about +-0.1 wide."""
    b = [[p / 99 * 0.9 for p in range(100)]] * 2
    a = [[x + 0.1 for x in row] for row in b]
    ci = st.paired_bootstrap(a, b, n_boot=500)
    assert ci["lo"] == pytest.approx(0.1) and ci["hi"] == pytest.approx(0.1)


def test_interval_holding_zero_is_equal_within_noise_and_described():
    ci = {"diff": -0.02, "lo": -0.08, "hi": 0.03, "seeds": 3, "problems": 128}
    assert st.verdict(ci) == "equal within noise (the interval holds 0)"
    assert st.describe(ci, "greedy pass@1") == ("greedy pass@1 -0.020 [95% CI -0.080, +0.030; 3 seed(s) x 128 "
                                                "problems, paired]: equal within noise (the interval holds 0)")
    assert st.verdict({"lo": -0.3, "hi": -0.1}) == "worse"


@pytest.mark.parametrize("a, b, msg", [([[1.0, 0.0]], [[1.0]], "one shape"), ([[math.nan]], [[0.0]], "non-finite"),
                                       ([1.0], [0.0], "one shape")])
def test_bad_scores_are_refused(a, b, msg):
    with pytest.raises(ValueError, match=msg):
        st.paired_bootstrap(a, b)


def test_per_problem_pass_at_k_is_the_unbiased_estimator():
    """n 8, c 1: pass@8 = 1; n 8, c 0: 0; n 8, c 2, k 4: 1 - C(6,4)/C(8,4) = 1 - 15/70 = 11/14."""
    assert st.per_problem_pass_at_k([(8, 1), (8, 0), (8, 2)], 8) == [1.0, 0.0, 1.0]
    assert st.per_problem_pass_at_k([(8, 2)], 4) == pytest.approx([11 / 14])


def test_entropy_ratio_is_seed_paired():
    """Seeds 0 and 1 of both; seed 2 of the method only (no GRPO partner: left out). Step 10: 0.6/0.3 = 2
    and 0.4/0.1 = 4 -> mean 3, band [2, 4]; step 20 lacks GRPO seed 1: not a common step."""
    method = {0: {10: 0.6, 20: 0.5}, 1: {10: 0.4, 20: 0.4}, 2: {10: 9.0}}
    base = {0: {10: 0.3, 20: 0.25}, 1: {10: 0.1}}
    assert st.entropy_ratio_curve(method, base) == [(10, 3.0, 2.0, 4.0, 2)]
    assert st.entropy_ratio_curve(method, {7: {10: 1.0}}) == []


def test_plateau_rule_written_out():
    """window 2, rel 0.05; H at steps 1..8: 2.0 1.5 1.0 0.9 0.85 0.84 0.83 0.83.
    step 4: mean of steps 1-2 1.75 vs 3-4 0.95 (46% lower); step 5: 1.25 vs 0.875 (30%);
    step 6: 0.95 vs 0.845 (11.1%); step 7: 0.875 vs 0.835 (4.6% < 5%): plateau at step 7."""
    h = {1: 2.0, 2: 1.5, 3: 1.0, 4: 0.9, 5: 0.85, 6: 0.84, 7: 0.83, 8: 0.83}
    assert st.plateau_step(h, window=2) == 7
    assert st.plateau_step({s: 2.0 - 0.1 * s for s in range(1, 12)}, window=2) is None
