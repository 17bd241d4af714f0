"""Entropy-performance law R = -a exp(H) + b (ALGORITHMS.md §2)."""
import math

import pytest

from orchestrator.entropy_law import fit_entropy_law


def test_recovers_exact_law_and_ceiling():
    a, b = 0.3, 0.9
    H = [1.5, 1.0, 0.7, 0.4, 0.2, 0.1]
    R = [-a * math.exp(h) + b for h in H]
    fit = fit_entropy_law(H, R)
    assert fit["a"] == pytest.approx(a) and fit["b"] == pytest.approx(b)
    assert fit["ceiling"] == pytest.approx(b - a) and fit["r2"] == pytest.approx(1.0)


def test_noisy_fit_has_r2_below_one():
    H = [1.2, 1.0, 0.8, 0.6, 0.4, 0.2]
    R = [-0.2 * math.exp(h) + 0.8 + e for h, e in zip(H, [0.01, -0.02, 0.015, 0.0, -0.01, 0.02])]
    fit = fit_entropy_law(H, R)
    assert 0.5 < fit["r2"] < 1.0 and fit["a"] > 0


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
