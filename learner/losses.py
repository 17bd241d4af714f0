"""Policy losses as pure tensor functions, registered by name.

The learner calls one entry, `compute_policy_loss(inputs, cfg) -> (loss, metrics)`. It builds one
shared detached pass (`TokenStats`: validity, entropy, covariance over S), asks the objective
registered under `cfg.type` for per-token terms, then applies the controls every objective shares:
forking mask (PG term only), aggregation with global normalisers, reference KL, entropy bonus.
So forking + KL-Cov + clip-higher is one config, one call, one covariance.

Registered objectives return `PolicyTerms`, not a scalar: composition needs the PG term and the
penalties apart. Nothing here knows about DeepSpeed, Ray or models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from learner.aggregation import aggregate
from learner.selectors import TokenStats, clip_cov_mask, forking_mask, kl_cov_mask, sent_selection

KL_CLAMP = 10.0


@dataclass
class LossInputs:
    logprobs: torch.Tensor  # [B, T] current policy log-probs of the taken tokens (with grad)
    old_logprobs: torch.Tensor  # [B, T] behaviour-policy log-probs (detached)
    advantages: torch.Tensor  # [B, T] sequence advantage broadcast over its tokens
    mask: torch.Tensor  # [B, T] float, 1 on valid response tokens
    entropy: Optional[torch.Tensor] = None  # [B, T] per-token entropy (detached unless a bonus needs grad)
    ref_logprobs: Optional[torch.Tensor] = None  # [B, T] reference-model log-probs, if KL is on
    # Normaliser for token-mean across micro-batches / ranks: when set, token-mean divides by this
    # global count instead of mask.sum(), so a sharded batch gives the same gradient as an unsharded one.
    global_num_tokens: Optional[float] = None
    global_num_seqs: Optional[float] = None
    generator: Optional[torch.Generator] = None  # for randomised selectors (Clip-Cov)


@dataclass
class PolicyTerms:
    """Per-token pieces of an objective, before the shared controls are applied."""

    pg: torch.Tensor  # policy-gradient term; the forking mask multiplies only this
    agg_mask: torch.Tensor  # tokens the loss averages over (valid tokens; SENT v1: its set L)
    penalty: Optional[torch.Tensor] = None  # per-token penalties, aggregated over agg_mask
    metrics: dict[str, float] = field(default_factory=dict)


ObjectiveFn = Callable[[LossInputs, object, TokenStats], PolicyTerms]
_POLICY_LOSSES: dict[str, ObjectiveFn] = {}


def register_policy_loss(name: str) -> Callable[[ObjectiveFn], ObjectiveFn]:
    def deco(fn: ObjectiveFn) -> ObjectiveFn:
        if name in _POLICY_LOSSES:
            raise ValueError(f"policy loss {name!r} registered twice")
        _POLICY_LOSSES[name] = fn
        return fn

    return deco


def get_policy_loss(name: str) -> ObjectiveFn:
    try:
        return _POLICY_LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown policy loss {name!r}; registered: {sorted(_POLICY_LOSSES)}") from None


def _frac(sel: torch.Tensor, valid: torch.Tensor) -> float:
    return float((sel & valid).sum()) / max(1, int(valid.sum()))


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate, clamped to ±10 (verl `kl_penalty`): one token cannot blow
    up the step.

    x is clamped to ±20 before exp for the same reason; within ±10 the two clamps never bind together.
    """
    if estimator == "k1":
        return (logprobs - ref_logprobs).clamp(-KL_CLAMP, KL_CLAMP)
    if estimator == "k3":
        x = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
        return (torch.exp(x) - x - 1.0).clamp(-KL_CLAMP, KL_CLAMP)
    raise ValueError(f"unknown KL estimator {estimator!r}")


def _ppo_clip(ratio, adv, eps_low, eps_high, dual_clip, valid):
    """max(-A r, -A clip(r)) with optional dual clip; returns the loss and clip-fraction metrics."""
    l1 = -adv * ratio
    l2 = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(l1, l2)
    clipped = (l2 > l1).detach()
    dual = torch.zeros_like(clipped)
    if dual_clip is not None:
        l3 = -adv * dual_clip
        dual = ((adv < 0) & (loss > l3)).detach()
        loss = torch.where(adv < 0, torch.minimum(loss, l3), loss)
    r = ratio.detach()
    metrics = {
        "clipfrac_high": _frac(clipped & (r > 1), valid),
        "clipfrac_low": _frac(clipped & (r < 1), valid),
        "clipfrac_dual": _frac(dual, valid),
    }
    return loss, clipped, metrics


@register_policy_loss("ppo_clip")
def ppo_clip_loss(inputs: LossInputs, cfg, stats: TokenStats) -> PolicyTerms:
    ratio = torch.exp(inputs.logprobs - inputs.old_logprobs)
    pg, _, metrics = _ppo_clip(
        ratio, inputs.advantages, cfg.eps_low, cfg.eps_high, cfg.dual_clip, stats.valid
    )
    return PolicyTerms(pg=pg, agg_mask=inputs.mask, metrics=metrics)


@register_policy_loss("clip_cov")
def clip_cov_loss(inputs: LossInputs, cfg, stats: TokenStats) -> PolicyTerms:
    """PPO-clip whose loss is multiplied by 0 on a few random high-covariance tokens (they stay in the
    denominator, so the other tokens' weights do not change)."""
    ratio = torch.exp(inputs.logprobs - inputs.old_logprobs)
    pg, clipped, metrics = _ppo_clip(
        ratio, inputs.advantages, cfg.eps_low, cfg.eps_high, cfg.dual_clip, stats.valid
    )
    zeroed = clip_cov_mask(
        stats.cov, stats.valid & ~clipped, stats.num_valid, cfg.ratio, cfg.lb, cfg.ub, cfg.min_one,
        inputs.generator,
    )
    metrics["frac_clip_cov_zeroed"] = _frac(zeroed, stats.valid)
    return PolicyTerms(pg=pg * (~zeroed).to(pg.dtype), agg_mask=inputs.mask, metrics=metrics)


@register_policy_loss("kl_cov")
def kl_cov_loss(inputs: LossInputs, cfg, stats: TokenStats) -> PolicyTerms:
    """Unclipped PG (the paper drops ratio clipping) + beta |lp - lp_old| on the top-kappa tokens by cov."""
    log_r = inputs.logprobs - inputs.old_logprobs
    penalised = kl_cov_mask(stats.cov, stats.valid, cfg.kappa)
    penalty = cfg.beta * log_r.abs() * penalised.to(log_r.dtype)
    return PolicyTerms(
        pg=-inputs.advantages * torch.exp(log_r),
        agg_mask=inputs.mask,
        penalty=penalty,
        metrics={"frac_kl_cov_penalised": _frac(penalised, stats.valid)},
    )


@register_policy_loss("sent")
def sent_loss(inputs: LossInputs, cfg, stats: TokenStats) -> PolicyTerms:
    log_r = inputs.logprobs - inputs.old_logprobs
    pg = -inputs.advantages * torch.exp(log_r)
    sel = sent_selection(stats, cfg.kappa, cfg.low_frac)
    if cfg.penalty == "abs_log_ratio":
        dist = log_r.abs()
    else:
        if inputs.ref_logprobs is None:
            raise ValueError("SENT penalty 'ref_kl' needs LossInputs.ref_logprobs")
        dist = kl_estimate(inputs.logprobs, inputs.ref_logprobs, "k3")
    metrics = {"frac_sent_low_entropy": _frac(sel.low, stats.valid)}
    if cfg.version == "v2":
        weight = 2.0 * sel.high_cov.to(dist.dtype) + 0.5 * sel.low_cov.to(dist.dtype)
        metrics.update(
            frac_sent_high=_frac(sel.high_cov, stats.valid), frac_sent_low=_frac(sel.low_cov, stats.valid)
        )
        return PolicyTerms(pg=pg, agg_mask=inputs.mask, penalty=cfg.beta * weight * dist, metrics=metrics)
    low = sel.low.to(dist.dtype)
    return PolicyTerms(pg=pg, agg_mask=inputs.mask * low, penalty=cfg.beta * low * dist, metrics=metrics)


@register_policy_loss("gspo")
def gspo_loss(inputs: LossInputs, cfg, stats: TokenStats) -> PolicyTerms:
    """Sequence ratio s_i = exp(mean_t log r) written per token as sg(s_i) exp(lp - sg(lp)): same value
    on every token, and under seq-mean-token-mean the same gradient as the sequence-level objective,
    while staying per-token so the forking mask still composes (verl `compute_policy_loss_gspo`)."""
    m = inputs.mask.to(inputs.logprobs.dtype)
    log_r = inputs.logprobs - inputs.old_logprobs
    seq_log_s = (log_r * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp_min(1.0)
    log_s = (seq_log_s.detach() + inputs.logprobs - inputs.logprobs.detach()).clamp(max=10.0)
    s = torch.exp(log_s)
    l1 = -inputs.advantages * s
    l2 = -inputs.advantages * s.clamp(1.0 - cfg.eps_low, 1.0 + cfg.eps_high)
    clipped = (l2 > l1).detach()
    return PolicyTerms(
        pg=torch.maximum(l1, l2),
        agg_mask=inputs.mask,
        metrics={
            "clipfrac_high": _frac(clipped & (s.detach() > 1), stats.valid),
            "clipfrac_low": _frac(clipped & (s.detach() < 1), stats.valid),
        },
    )


@register_policy_loss("cispo")
def cispo_loss(inputs: LossInputs, cfg, stats: TokenStats) -> PolicyTerms:
    """-sg(clip(r)) A lp: the weight is clipped, the gradient never is, so rare tokens keep theirs."""
    ratio = torch.exp(inputs.logprobs - inputs.old_logprobs).detach()
    w = ratio.clamp(1.0 - cfg.eps_low, 1.0 + cfg.eps_high)
    return PolicyTerms(
        pg=-w * inputs.advantages * inputs.logprobs,
        agg_mask=inputs.mask,
        metrics={
            "clipfrac_high": _frac(ratio > 1.0 + cfg.eps_high, stats.valid),
            "clipfrac_low": _frac(ratio < 1.0 - cfg.eps_low, stats.valid),
        },
    )


def _cov_metrics(stats: TokenStats) -> dict[str, float]:
    n = stats.num_valid
    if n == 0:
        return {}
    cov = stats.cov[stats.valid]
    top = torch.topk(cov, max(1, math.ceil(1e-3 * n))).values
    return {
        "cov_mean": float(cov.mean()),
        "cov_top0.1pct_mean": float(top.mean()),
        "cov_max": float(cov.max()),
    }


def _subset_agg(agg: dict, subset: torch.Tensor, valid: torch.Tensor) -> dict:
    """Global normaliser for a loss averaged over a subset of the valid tokens (forking's selected
    tokens, SENT v1's L): a shard contributes its subset mean weighted by its share of all tokens,
    sum_i N_i/N * mean_sub_i. Exact when the selection runs on the whole scope; a no-op otherwise."""
    if agg["num_tokens"] is None:
        return agg
    n_sub, n_valid = float((subset > 0).sum()), float(valid.sum())
    if n_sub == n_valid:
        return agg
    return dict(agg, num_tokens=max(1.0, agg["num_tokens"] * n_sub / max(n_valid, 1.0)))


def compute_policy_loss(inputs: LossInputs, cfg) -> tuple[torch.Tensor, dict[str, float]]:
    """The learner's one call: objective `cfg.type` + forking mask + aggregation + ref KL + entropy bonus."""
    valid = inputs.mask > 0
    stats = TokenStats(
        valid=valid,
        logprobs=inputs.logprobs.detach(),
        old_logprobs=inputs.old_logprobs.detach(),
        advantages=inputs.advantages.detach(),
        entropy=None if inputs.entropy is None else inputs.entropy.detach(),
    )
    terms = get_policy_loss(cfg.type)(inputs, cfg, stats)
    agg = dict(
        num_tokens=inputs.global_num_tokens,
        num_seqs=inputs.global_num_seqs,
        norm_constant=cfg.agg_norm_constant,
    )
    metrics = dict(terms.metrics)

    m = terms.agg_mask
    fork = None
    if cfg.forking is not None:
        h = stats.require_entropy("forking mask")
        fork = forking_mask(h, valid, cfg.forking.rho, cfg.forking.variant)
        metrics["frac_forking_kept"] = _frac(fork, valid)
    if fork is None:
        pg_loss = aggregate(terms.pg, m, cfg.agg, **_subset_agg(agg, m, valid))
    elif cfg.forking.normalise == "all":
        pg_loss = aggregate(terms.pg * fork.to(terms.pg.dtype), m, cfg.agg, **_subset_agg(agg, m, valid))
    else:
        sel_mask = m * fork.to(m.dtype)
        pg_loss = aggregate(terms.pg, sel_mask, cfg.agg, **_subset_agg(agg, sel_mask, valid))
    loss = pg_loss
    metrics["pg_loss"] = float(pg_loss.detach())
    if terms.penalty is not None:
        penalty = aggregate(terms.penalty, m, cfg.agg, **_subset_agg(agg, m, valid))
        loss = loss + penalty
        metrics["penalty"] = float(penalty.detach())

    if cfg.ref_kl is not None and cfg.ref_kl.coef > 0:
        if inputs.ref_logprobs is None:
            raise ValueError(f"ref_kl is configured for {cfg.type!r} but LossInputs.ref_logprobs is None")
        per_token = kl_estimate(inputs.logprobs, inputs.ref_logprobs, cfg.ref_kl.estimator)
        kl = aggregate(per_token, inputs.mask, cfg.agg, **agg)
        loss = loss + cfg.ref_kl.coef * kl
        metrics["kl"] = float(kl.detach())

    if cfg.entropy_coef > 0:
        if inputs.entropy is None or not inputs.entropy.requires_grad:
            raise ValueError(
                "entropy bonus needs LossInputs.entropy with grad "
                "(token_logprobs_and_entropy(..., entropy_grad=True))"
            )
        bonus = cfg.entropy_coef * aggregate(inputs.entropy, inputs.mask, cfg.agg, **agg)
        loss = loss - bonus
        metrics["entropy_bonus"] = float(bonus.detach())

    ratio = torch.exp(stats.logprobs - stats.old_logprobs)[valid]
    if ratio.numel():
        metrics.update(ratio_mean=float(ratio.mean()), ratio_max=float(ratio.max()))
    if stats.entropy is not None and ratio.numel():
        metrics["entropy_mean"] = float(stats.entropy[valid].float().mean())
    metrics.update(_cov_metrics(stats))
    metrics["loss"] = float(loss.detach())
    return loss, metrics
