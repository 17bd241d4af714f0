"""tracking_stats on hand-made series; every figure is worked out in the comments."""
import pytest

from forkrl.orchestrator.tracking import tracking_stats


def test_scores_from_the_first_step_in_band_on():
    """Target 1.0, band +-10%: steps 0-1 (2.0, 1.5) are the approach, not scored. From step 2 (1.05):
    1.05 in, 0.95 in, 1.2 out, 1.0 in, 0.89 out (|0.11| > 0.1) -> 3 of 5 = 0.6.
    errors +0.05, -0.05, +0.2, 0, -0.11: mean |e| 0.41 / 5 = 0.082; rms sqrt(0.0571 / 5)."""
    st = tracking_stats(range(7), [2.0, 1.5, 1.05, 0.95, 1.2, 1.0, 0.89], [1.0] * 7)
    assert st["first_in_band"] == 2 and st["scored"] == 5 and st["in_band"] == 3
    assert st["frac_in_band"] == pytest.approx(0.6)
    assert st["mean_abs_error"] == pytest.approx(0.082)
    assert st["rms_error"] == pytest.approx((0.0571 / 5) ** 0.5)
    assert st["held"] is False


def test_held_at_eighty_percent_and_relative_band_follows_a_schedule():
    """Target 0.5 then 1.0: band +-0.05 then +-0.1. 0.54 in, 0.46 in, 0.56 out, 1.09 in, 0.91 in:
    4 of 5 = 0.8 >= 0.8: held. A nan step is skipped."""
    st = tracking_stats([10, 11, 12, 13, 14, 15], [0.54, 0.46, float("nan"), 0.56, 1.09, 0.91],
                        [0.5, 0.5, 0.5, 0.5, 1.0, 1.0])
    assert (st["first_in_band"], st["scored"], st["in_band"]) == (10, 5, 4)
    assert st["frac_in_band"] == pytest.approx(0.8) and st["held"] is True
    assert st["mean_rel_error"] == pytest.approx((0.08 + 0.08 + 0.12 + 0.09 + 0.09) / 5)


def test_never_reaching_the_band_is_not_held():
    st = tracking_stats([0, 1, 2], [0.3, 0.2, 0.1], [1.0, 1.0, 1.0])
    assert st["first_in_band"] is None and st["held"] is False and st["frac_in_band"] is None


@pytest.mark.parametrize("args, msg", [(([0, 1], [1.0], [1.0, 1.0]), "2 steps, 1 entropies"),
                                       (([0], [1.0], [0.0]), "targets must be finite and > 0")])
def test_bad_input_names_the_problem(args, msg):
    with pytest.raises(ValueError, match=msg):
        tracking_stats(*args)
