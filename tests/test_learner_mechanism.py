"""learner.mechanism on a hand-computed two-token, two-action softmax example.

Token 1: logits [0, 0] -> p (1/2, 1/2), H = ln 2 = 0.693147; sampled action 0, lp = ln(1/2), A = +1.
  After the step: logits [ln 3, 0] -> (3/4, 1/4), H = 3/4 ln(4/3) + 1/4 ln 4 = 0.562335.
Token 2: logits [ln 3, 0] -> (3/4, 1/4), H = 0.562335; sampled action 1, lp = ln(1/4), A = -1.
  After: logits [ln 3, -ln 3] -> (9/10, 1/10), H = 0.9 ln(10/9) + 0.1 ln 10 = 0.325083.
Token-mean H: before (0.693147 + 0.562335) / 2 = 0.627741, after (0.562335 + 0.325083) / 2 = 0.443709,
change -0.184032.
cov (natural PG form): mean lp = -1.5 ln 2, mean A = 0; centred lp = +-ln 2 / 2, so
  cov = ((ln2/2)(1) + (-ln2/2)(-1)) / 2 = ln 2 / 2 = 0.346574 > 0: predicted dH < 0, as measured.
cov_vanilla: pi A = (1/2, -1/4), mean 1/8, centred +-3/8: cov = (ln2/2)(3/8) = 3 ln 2 / 16 = 0.129965.
"""
import math

import pytest
import torch

from forkrl.learner.entropy import token_logprobs_and_entropy
from forkrl.learner.mechanism import entropy_mechanism, mechanism_from_sums, mechanism_metrics, mechanism_sums

L3 = math.log(3.0)
BEFORE = torch.tensor([[[0.0, 0.0], [L3, 0.0]]], dtype=torch.float64)
AFTER = torch.tensor([[[L3, 0.0], [L3, -L3]]], dtype=torch.float64)
ACTIONS = torch.tensor([[0, 1]])
ADV = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
MASK = torch.ones(1, 2)


def _inputs():
    lp, h0 = token_logprobs_and_entropy(BEFORE, ACTIONS)
    _, h1 = token_logprobs_and_entropy(AFTER, ACTIONS)
    return h0, h1, lp


def test_two_token_softmax_written_out():
    h0, h1, lp = _inputs()
    assert h0[0].tolist() == pytest.approx([0.693147, 0.562335], abs=1e-6)
    assert h1[0].tolist() == pytest.approx([0.562335, 0.325083], abs=1e-6)
    m = entropy_mechanism(h0, h1, lp, ADV, MASK)
    assert m["entropy_before"] == pytest.approx(0.627741, abs=1e-6)
    assert m["entropy_after"] == pytest.approx(0.443709, abs=1e-6)
    assert m["entropy_change"] == pytest.approx(-0.184032, abs=1e-6)
    assert m["cov"] == pytest.approx(math.log(2) / 2)
    assert m["cov_vanilla"] == pytest.approx(3 * math.log(2) / 16)
    assert m["signs_agree"] == 1.0 and m["tokens"] == 2.0


def test_cov_is_centred_on_the_advantage_too():
    """Advantages (2, 0) instead of (1, -1): mean A = 1, centred +-1, so cov is still ln 2 / 2 (the
    uncentred mean of lp A would be (2 ln(1/2) + 0) / 2 = -0.693147, of the other sign)."""
    h0, h1, lp = _inputs()
    m = entropy_mechanism(h0, h1, lp, ADV + 1.0, MASK)
    assert m["cov"] == pytest.approx(math.log(2) / 2)


def test_padding_is_left_out_and_sums_add_over_ranks():
    """A third, padded token with wild values changes nothing; splitting the two tokens over two
    'ranks' and adding their sums gives the one-batch answer (the all-reduce the worker does)."""
    h0, h1, lp = _inputs()
    pad = lambda t, v: torch.cat([t, torch.full((1, 1), v, dtype=t.dtype)], dim=1)
    m = entropy_mechanism(pad(h0, 9.0), pad(h1, -9.0), pad(lp, -50.0), pad(ADV, 7.0),
                          torch.tensor([[1.0, 1.0, 0.0]]))
    assert m["cov"] == pytest.approx(math.log(2) / 2) and m["tokens"] == 2.0
    split = [mechanism_sums(h0[:, i:i + 1], h1[:, i:i + 1], lp[:, i:i + 1], ADV[:, i:i + 1], MASK[:, i:i + 1])
             for i in (0, 1)]
    assert mechanism_from_sums(split[0] + split[1]) == pytest.approx(m)


def test_entropy_rising_with_positive_cov_is_a_disagreement():
    h0, h1, lp = _inputs()
    m = entropy_mechanism(h1, h0, lp, ADV, MASK)  # after and before swapped: dH = +0.184
    assert m["entropy_change"] == pytest.approx(0.184032, abs=1e-6) and m["signs_agree"] == 0.0


def test_no_valid_token_and_bad_input():
    h0, h1, lp = _inputs()
    m = entropy_mechanism(h0, h1, lp, ADV, torch.zeros(1, 2))
    assert m["tokens"] == 0.0 and math.isnan(m["cov"]) and math.isnan(m["signs_agree"])
    with pytest.raises(ValueError, match="share one shape"):
        entropy_mechanism(h0, h1, lp, ADV[:, :1], MASK)
    with pytest.raises(ValueError, match="non-finite"):
        entropy_mechanism(h0, h1, lp, torch.tensor([[1.0, math.nan]], dtype=torch.float64), MASK)


def test_metric_names_are_the_ones_the_bench_reads():
    h0, h1, lp = _inputs()
    m = mechanism_metrics(mechanism_sums(h0, h1, lp, ADV, MASK))
    assert set(m) == {"mechanism_entropy_before", "mechanism_entropy_after", "mechanism_entropy_change",
                      "mechanism_cov", "mechanism_cov_vanilla", "mechanism_signs_agree", "mechanism_tokens"}
