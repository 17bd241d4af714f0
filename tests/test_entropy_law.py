"""Entropy-performance law R = -a exp(H) + b (ALGORITHMS.md §2)."""
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
