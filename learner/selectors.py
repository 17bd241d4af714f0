"""Token selectors: which tokens of the selection scope S a control acts on (docs/ALGORITHMS.md §2-§4;
Cui et al. arXiv 2505.22617, Wang et al. arXiv 2506.01939, SENT arXiv
2512.04359).

Every function here takes detached per-token tensors of one scope ([B, T] plus a bool `valid`
mask) and returns bool masks of the same shape. Nothing here builds a graph or touches a loss:
the losses multiply by these masks, which keeps the selection testable on its own and lets several
controls share one entropy/covariance pass (`TokenStats`).

Scope: a selector ranks over exactly the tensor it is handed. The learner hands over one
micro-batch, the scope all three reference codes use and the only one implemented (the job config
rejects `scope: mini | global`); a wider scope would hand over more rows, with the same functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return (x * valid).sum() / valid.sum().clamp_min(1)


def centred_cov(lp: torch.Tensor, adv: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """cov_t = (lp_t - mean_S lp)(A_t - mean_S A) over the `valid` tokens; 0 elsewhere.

    Detached on purpose: the covariance picks tokens, it is never differentiated (Cui et al. §4).
    """
    lp, adv, v = lp.detach().float(), adv.detach().float(), valid.float()
    cov = (lp - masked_mean(lp, v)) * (adv - masked_mean(adv, v))
    return cov * v


def _topk_mask(score: torch.Tensor, valid: torch.Tensor, k: int, largest: bool = True) -> torch.Tensor:
    """Bool mask of the k valid tokens with the largest (or smallest) score; ties broken by topk."""
    out = torch.zeros_like(valid, dtype=torch.bool)
    idx = valid.flatten().nonzero().squeeze(-1)
    k = min(k, idx.numel())
    if k <= 0:
        return out
    picked = torch.topk(score.flatten()[idx].float(), k, largest=largest).indices
    out.view(-1)[idx[picked]] = True
    return out


@dataclass
class TokenStats:
    """The one shared pass per call: detached per-token quantities every selector reads.

    `cov` is computed lazily and at most once, so a forking mask + KL-Cov + Clip-Cov composition
    costs one covariance over S, not one per control.
    """

    valid: torch.Tensor  # bool [B, T]
    logprobs: torch.Tensor  # detached current-policy lp
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    entropy: Optional[torch.Tensor] = None
    _cov: Optional[torch.Tensor] = field(default=None, repr=False)

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    @property
    def cov(self) -> torch.Tensor:
        if self._cov is None:
            self._cov = centred_cov(self.logprobs, self.advantages, self.valid)
        return self._cov

    def require_entropy(self, who: str) -> torch.Tensor:
        if self.entropy is None:
            raise ValueError(f"{who} ranks tokens by entropy: pass LossInputs.entropy")
        return self.entropy.detach()


def forking_mask(
    entropy: torch.Tensor, valid: torch.Tensor, rho: float, variant: str = "topk"
) -> torch.Tensor:
    """High-entropy "forking" tokens (Wang et al. §3): top k = max(1, ceil(rho N)) valid tokens by H.

    `quantile` keeps every valid token with H >= quantile(H, 1 - rho), so ties at the threshold
    keep more than k (the paper's wording); `topk` keeps exactly k (its code).
    """
    n = int(valid.sum())
    if n == 0:
        return torch.zeros_like(valid, dtype=torch.bool)
    if variant == "topk":
        return _topk_mask(entropy, valid, max(1, math.ceil(rho * n)))
    if variant == "quantile":
        h = entropy.detach().float()
        thr = torch.quantile(h[valid], 1.0 - rho)
        return valid & (h >= thr)
    raise ValueError(f"unknown forking variant {variant!r}")


def clip_cov_mask(
    cov: torch.Tensor,
    candidates_ok: torch.Tensor,
    num_valid: int,
    ratio: float,
    lb: float,
    ub: float,
    min_one: bool = True,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Tokens whose loss Clip-Cov multiplies by 0 (Cui et al. §4.2, verl `compute_policy_loss_clip_cov`).

    Candidates: `candidates_ok` (valid and not already clipped by PPO) with lb < cov < ub, strictly.
    Picks min(max(1, floor(ratio N)), |C|) of them uniformly; `min_one=False` drops the max(1, .) so
    that ratio 0 reproduces PPO-clip exactly. The permutation is drawn on the CPU so one seed gives
    one pick whatever the device.
    """
    cand = candidates_ok & (cov > lb) & (cov < ub)
    idx = cand.flatten().nonzero().squeeze(-1)
    k = math.floor(ratio * num_valid)
    if min_one:
        k = max(1, k)
    k = min(k, idx.numel())
    out = torch.zeros_like(cand)
    if k > 0:
        perm = torch.randperm(idx.numel(), generator=generator)[:k].to(idx.device)
        out.view(-1)[idx[perm]] = True
    return out


def kl_cov_mask(cov: torch.Tensor, valid: torch.Tensor, kappa: float) -> torch.Tensor:
    """Top max(1, floor(kappa N)) valid tokens by covariance: the ones KL-Cov penalises."""
    n = int(valid.sum())
    if n == 0:
        return torch.zeros_like(valid, dtype=torch.bool)
    return _topk_mask(cov, valid, max(1, math.floor(kappa * n)))


@dataclass
class SentSelection:
    low: torch.Tensor  # L: the low-entropy set
    high_cov: torch.Tensor  # top-n of L by cov, less any overlap with low_cov (gets 2 beta)
    low_cov: torch.Tensor  # bottom-n of L by cov (gets 0.5 beta)
    cov: torch.Tensor  # covariance centred over L, 0 outside L


def sent_selection(stats: TokenStats, kappa: float, low_frac: float = 0.8) -> SentSelection:
    """SENT v2 token sets (released code): L = bottom max(1, floor(0.8 N)) by H; cov centred over L.

    n = max(1, floor(kappa |L|)). When 2n > |L| the two sets overlap; the released code writes 2 beta
    on the top-n first and 0.5 beta on the bottom-n afterwards, so the overlap ends at 0.5 beta
    (docs/ALGORITHMS.md §4): `low_cov` has n tokens, `high_cov` the
    top-n minus the overlap. The covariance is centred over L's tokens, as the paper intends, not
    over the rows the released code's integer mask selects (see `learner.losses.sent_loss`).
    """
    h = stats.require_entropy("SENT")
    n_valid = stats.num_valid
    if n_valid == 0:
        z = torch.zeros_like(stats.valid, dtype=torch.bool)
        return SentSelection(z, z, z, torch.zeros_like(stats.logprobs, dtype=torch.float32))
    low = _topk_mask(h, stats.valid, max(1, math.floor(low_frac * n_valid)), largest=False)
    cov = centred_cov(stats.logprobs, stats.advantages, low)
    size = int(low.sum())
    n = max(1, math.floor(kappa * size))
    high_cov = _topk_mask(cov, low, n, largest=True)
    low_cov = _topk_mask(cov, low, n, largest=False)
    return SentSelection(low, high_cov & ~low_cov, low_cov, cov)
