"""Entropy-performance law R = -a exp(H) + b (docs/ALGORITHMS.md §2)."""
import math

import pytest

from forkrl.orchestrator.entropy_law import fit_entropy_law


def test_recovers_exact_law_and_ceiling():
    a, b = 0.3, 0.9
    H = [1.5, 1.0, 0.7, 0.4, 0.2, 0.1]
    R = [-a * math.exp(h) + b for h in H]
    fit = fit_entropy_law(H, R)
    assert fit["a"] == pytest.approx(a) and fit["b"] == pytest.approx(b)
    assert fit["ceiling"] == pytest.approx(b - a) and fit["r2"] == pytest.approx(1.0)


def test_noisy_fit_is_least_squares_by_hand():
    # x = exp(H) = 1, 2, 3, 4; mean x 2.5, mean R 0.225; Sxy = -0.95, Sxx = 5 -> slope -0.19 = -a,
    # b = 0.225 + 0.19 * 2.5 = 0.7; residuals -0.01, -0.02, 0.07, -0.04 -> r2 = 1 - 0.007 / 0.1875
    H = [0.0, math.log(2), math.log(3), math.log(4)]
    R = [0.5, 0.3, 0.2, -0.1]
    fit = fit_entropy_law(H, R)
    assert fit["a"] == pytest.approx(0.19) and fit["b"] == pytest.approx(0.7)
    assert fit["ceiling"] == pytest.approx(0.51) and fit["r2"] == pytest.approx(1 - 0.007 / 0.1875)


@pytest.mark.parametrize(
    "H,R",
    [([], []), ([0.5], [0.3]), ([0.5, 0.4], [0.3, 0.4]), ([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]),
     ([0.5, 0.4, float("nan")], [0.1, 0.2, 0.3]), ([0.5, 0.4, 0.3], [0.1, 0.2])],
)
def test_degenerate_inputs_return_none(H, R):
    assert fit_entropy_law(H, R) is None


def test_constant_reward_fits_flat_line():
    fit = fit_entropy_law([0.1, 0.5, 0.9], [0.4, 0.4, 0.4])
    assert fit["a"] == pytest.approx(0.0) and fit["b"] == pytest.approx(0.4) and fit["r2"] == 1.0


# ---- the law as a prediction (issue 21 item 5) ----------------------------------------------------

from forkrl.orchestrator.entropy_law import predict_final  # noqa: E402


def test_prediction_fits_the_first_third_only():
    """Nine evaluations (steps 10..90): the first ceil(9/3) = 3 lie on R = -0.2 e^H + 0.9; the later six
    are far off that line. The fit is exactly that line, says steps [10, 20, 30], and predicts the
    final step's accuracy from its entropy 0.5: -0.2 e^0.5 + 0.9 = 0.570256, against 0.1 measured."""
    first = [(10, 1.5, -0.2 * math.exp(1.5) + 0.9), (20, 1.2, -0.2 * math.exp(1.2) + 0.9),
             (30, 1.0, -0.2 * math.exp(1.0) + 0.9)]
    later = [(40, 0.9, 0.0), (50, 0.8, 0.95), (60, 0.7, 0.0), (70, 0.6, 0.9), (80, 0.55, 0.3), (90, 0.5, 0.1)]
    out = predict_final(later[::-1] + first + [(0, float("nan"), 0.15)])  # any order; step 0 has no H
    assert out["fit_steps"] == [10, 20, 30] and out["final_step"] == 90 and out["reason"] is None
    assert out["a"] == pytest.approx(0.2) and out["b"] == pytest.approx(0.9) and out["r2"] == pytest.approx(1.0)
    assert out["predicted_final"] == pytest.approx(0.570256, abs=1e-6)
    assert out["measured_final"] == 0.1 and out["error"] == pytest.approx(0.470256, abs=1e-6)
    moved = predict_final(first + [(s, h, r + 0.3) for s, h, r in later])  # later points moved: same fit
    assert (moved["a"], moved["b"]) == pytest.approx((0.2, 0.9))


def test_too_few_evaluations_say_so():
    out = predict_final([(10, 1.0, 0.2), (20, 0.8, 0.3), (30, 0.6, 0.4), (40, 0.5, 0.45)])
    assert out["fit_steps"] == [10, 20] and math.isnan(out["predicted_final"])
    assert "cannot fit a line" in out["reason"]
    with pytest.raises(ValueError, match="two evaluations at one step"):
        predict_final([(10, 1.0, 0.2), (10, 0.9, 0.3)])
