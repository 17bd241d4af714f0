"""The metrics of one train step, gathered over micro-batches and ranks."""
from __future__ import annotations

from typing import Any

import torch

from forkrl.learner.types import TrainBatch

# Loss metrics that are a micro-batch's share of a globally normalised sum (the loss terms of
# learner.losses.compute_policy_loss): summed over micro-batches and ranks. Every other loss metric
# is a local mean (clip fractions, ratio, covariance stats), averaged weighted by loss tokens.
SHARE_METRICS = frozenset({"loss", "pg_loss", "penalty", "kl", "entropy_bonus"})


class StepMetrics:
    """Metrics gathered over micro-batches and ranks.

    `add`: a local mean, combined as sum(w * v) / sum(w) (w = tokens). `add_share`: a micro-batch's
    share of a globally normalised sum (the loss terms), summed over micro-batches and ranks and
    divided by the number of optimizer steps.
    """

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}
        self.shares: dict[str, float] = {}

    def add(self, name: str, value: float, weight: float = 1.0) -> None:
        s = self.sums.setdefault(name, [0.0, 0.0])
        s[0] += float(value) * weight
        s[1] += weight

    def add_share(self, name: str, value: float) -> None:
        self.shares[name] = self.shares.get(name, 0.0) + float(value)

    def reduce(self, world_size: int, steps: int) -> dict[str, float]:
        import torch.distributed as dist

        gathered: list[Any] = [(self.sums, self.shares)]
        if world_size > 1:
            gathered = [None] * world_size
            dist.all_gather_object(gathered, (self.sums, self.shares))
        total: dict[str, list[float]] = {}
        shares: dict[str, float] = {}
        for sums, rank_shares in gathered:
            for k, (v, w) in sums.items():
                t = total.setdefault(k, [0.0, 0.0])
                t[0] += v
                t[1] += w
            for k, v in rank_shares.items():
                shares[k] = shares.get(k, 0.0) + v
        out = {k: (v / w if w > 0 else 0.0) for k, (v, w) in total.items()}
        out.update({k: v / max(steps, 1) for k, v in shares.items()})
        return dict(sorted(out.items()))


def k3(other: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || other) per token: exp(x) - x - 1, x = other - lp, clamped."""
    x = (other - lp).clamp(-10, 10)
    return x.exp() - x - 1


def add_token_metrics(metrics: StepMetrics, mb: TrainBatch, lp, ent, old, ref, mask) -> None:
    """Per-token statistics of a micro-batch's loss tokens: entropy, KL to the old (and reference)
    policy, |learner - rollout| log-prob gap; each a mean weighted by the loss tokens."""
    n = float(mask.sum())
    if n <= 0:
        return
    metrics.add("entropy", float((ent * mask).sum()) / n, n)
    metrics.add("kl_old_k3", float((k3(old, lp) * mask).sum()) / n, n)
    if ref is not None:
        metrics.add("kl_ref_k3", float((k3(ref, lp) * mask).sum()) / n, n)
    rollout = mb.rollout_logprobs[:, 1:].to(lp.device)
    metrics.add("rollout_logprob_abs_diff", float(((lp - rollout).abs() * mask).sum()) / n, n)
