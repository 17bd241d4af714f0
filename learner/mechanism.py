"""The paper's entropy mechanism, measured: the entropy change of one training step beside the
covariance of token log-probability and advantage that is said to drive it (Cui et al., arXiv
2505.22617 §3, issue 21 item 4).

What the paper derives. For a softmax policy pi(a|s) = softmax(z_s), one update changes the entropy
at state s by, to first order, H(pi^{k+1}|s) - H(pi^k|s) ~ -Cov_{a~pi^k(.|s)}(log pi^k(a|s),
z^{k+1}_{s,a} - z^k_{s,a}) (their Lemma 1). What z moves by depends on the optimiser:
- vanilla policy gradient (tabular softmax, step eta): dz_{s,a} = eta pi(a|s) A(s,a), so
  dH ~ -eta Cov(log pi, pi A)  (``cov_vanilla`` here);
- natural policy gradient: dz_{s,a} = eta A(s,a), so dH ~ -eta Cov(log pi, A)  (``cov``, the form
  Clip-Cov and KL-Cov rank tokens by: ``selectors.centred_cov`` is its per-token summand).

What is estimated here, exactly. ``cov`` is the centred covariance over the batch's valid tokens,
mean_t[(lp_t - mean lp)(A_t - mean A)] with lp_t = log pi_old(y_t | prefix) of the sampled token,
i.e. the natural-PG form with the expectation over a ~ pi(.|s) replaced by the sampled tokens and
pooled over all states (prefixes) of the batch rather than taken per state; ``cov_vanilla`` is the
same with pi_t A_t (pi_t = exp(lp_t)) in place of A_t. The prediction is sign(dH) = -sign(cov).

Why it is approximate (why a correlation, not an identity, is what to look for):
- the learner is a transformer trained with Adam, not a tabular softmax under (natural) PG: logits
  of different states share parameters, and Adam's per-parameter step (m / sqrt(v)) is neither the
  vanilla gradient nor the Fisher-preconditioned natural gradient, so dz is neither eta pi A nor
  eta A; both forms are first-order guesses at its direction (the paper reports them matching in
  sign, at its scale);
- one training step is several mini-batch updates, PPO clipping, penalties and gradient clipping,
  and a finite step: the first-order expansion in dz is what Lemma 1 keeps;
- per-state covariances under pi are replaced by one pooled covariance of sampled tokens.

The entropies are token means over the same valid tokens: ``entropy_before`` from the policy that
sampled (the old-log-prob pass), ``entropy_after`` from one extra forward pass after the step's last
optimizer step, on the same batch. ``mechanism_sums`` returns additive sums so that ranks can
all-reduce them before ``mechanism_from_sums`` (exact over a data-parallel group).
"""
from __future__ import annotations

import math

import torch

SUM_FIELDS = ("n", "h_before", "h_after", "lp", "adv", "lp_adv", "pa", "lp_pa")


def mechanism_sums(entropy_before: torch.Tensor, entropy_after: torch.Tensor, logprobs: torch.Tensor,
                   advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """float64 [8] sums over the valid tokens, in SUM_FIELDS order: count, H before, H after, lp, A,
    lp A, pi A, lp pi A (pi = exp(lp)). Every input is [B, T] (or any one shape); mask > 0 is valid."""
    shapes = {t.shape for t in (entropy_before, entropy_after, logprobs, advantages, mask)}
    if len(shapes) != 1:
        raise ValueError(f"mechanism_sums: inputs must share one shape, got {sorted(map(tuple, shapes))}")
    v = mask.detach() > 0
    h0, h1, lp, a = (t.detach().double()[v] for t in (entropy_before, entropy_after, logprobs, advantages))
    if not all(bool(torch.isfinite(t).all()) for t in (h0, h1, lp, a)):
        raise ValueError("mechanism_sums: a non-finite entropy, log-prob or advantage on a valid token")
    pa = torch.exp(lp) * a
    return torch.stack([torch.tensor(float(v.sum()), dtype=torch.float64), h0.sum(), h1.sum(), lp.sum(),
                        a.sum(), (lp * a).sum(), pa.sum(), (lp * pa).sum()])


def mechanism_from_sums(sums: torch.Tensor) -> dict[str, float]:
    """{entropy_before, entropy_after, entropy_change, cov, cov_vanilla, signs_agree, tokens}.

    Covariances divide by n (the selectors' mean of centred products). ``signs_agree`` is 1.0 when
    sign(entropy_change) == -sign(cov), 0.0 otherwise (a zero on either side counts as not agreeing);
    every figure is nan without a valid token."""
    n, h0, h1, lp, a, lpa, pa, lppa = (float(x) for x in sums.tolist())
    if n <= 0:
        return {k: math.nan for k in ("entropy_before", "entropy_after", "entropy_change", "cov",
                                      "cov_vanilla", "signs_agree")} | {"tokens": 0.0}
    d_h = h1 / n - h0 / n
    cov = lpa / n - (lp / n) * (a / n)
    cov_v = lppa / n - (lp / n) * (pa / n)
    agree = float(d_h != 0 and cov != 0 and (d_h > 0) == (cov < 0))
    return {"entropy_before": h0 / n, "entropy_after": h1 / n, "entropy_change": d_h, "cov": cov,
            "cov_vanilla": cov_v, "signs_agree": agree, "tokens": n}


def entropy_mechanism(entropy_before: torch.Tensor, entropy_after: torch.Tensor, logprobs: torch.Tensor,
                      advantages: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """The step's entropy change and the covariance terms over one (rank's) batch (module doc)."""
    return mechanism_from_sums(mechanism_sums(entropy_before, entropy_after, logprobs, advantages, mask))


METRIC_PREFIX = "mechanism_"
"""The learner reports the figures as ``mechanism_<name>``; the trainer logs them as
``train/mechanism_<name>`` (bench/compare_read.py reads those keys)."""


def mechanism_metrics(sums: torch.Tensor) -> dict[str, float]:
    """``mechanism_from_sums`` under the learner's metric names (``mechanism_cov``, ...)."""
    return {f"{METRIC_PREFIX}{k}": v for k, v in mechanism_from_sums(sums).items()}
