"""Policy losses as pure tensor functions, registered by name.

The learner calls one entry, `compute_policy_loss(inputs, cfg) -> (loss, metrics)`. It builds one
shared detached pass (`TokenStats`: validity, entropy, covariance over S), asks the objective
registered under `cfg.type` for per-token terms, then applies the controls every objective shares:
truncated importance sampling and the forking mask (PG term only), aggregation with global
normalisers, reference KL, entropy bonus.
So forking + KL-Cov + clip-higher is one config, one call, one covariance.

Registered objectives return `PolicyTerms`, not a scalar: composition needs the PG term and the
penalties apart. Nothing here knows about DeepSpeed, Ray or models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from forkrl.learner.aggregation import aggregate
from forkrl.learner.selectors import TokenStats, clip_cov_mask, forking_mask, kl_cov_mask, sent_selection

KL_CLAMP = 10.0  # bound of the k3 estimate per token (verl's low_var_kl)
K3_LOG_RATIO_CLAMP = 20.0  # bound of x = lp_ref - lp before exp in k3 (verl's low_var_kl)


@dataclass
class LossInputs:
    logprobs: torch.Tensor  # [B, T] current policy log-probs of the taken tokens (with grad)
    old_logprobs: torch.Tensor  # [B, T] old (proximal) policy log-probs, the learner's (detached)
    advantages: torch.Tensor  # [B, T] sequence advantage broadcast over its tokens
    mask: torch.Tensor  # [B, T] float, 1 on valid response tokens
    entropy: Optional[torch.Tensor] = None  # [B, T] per-token entropy (detached unless a bonus needs grad)
    ref_logprobs: Optional[torch.Tensor] = None  # [B, T] reference-model log-probs, if KL is on
    # [B, T] the sampler's log-probs (behaviour policy): truncated importance sampling (cfg.tis) weighs
    # the PG term by them, and the behaviour/learner KL is reported whenever they are given.
    rollout_logprobs: Optional[torch.Tensor] = None
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
    """Per-token KL(pi || pi_ref) estimate, as verl's `kl_penalty` (trainer/ppo/core_algos.py).

    k1 ('kl' there) is lp - lp_ref, unclamped: linear in lp, it cannot explode. k3 ('low_var_kl')
    exp(x) - x - 1 with x = lp_ref - lp is exponential in x, so x is clamped to ±20 before exp and
    the estimate to ±10 after it: one token cannot blow up the step.
    """
    if estimator == "k1":
        return logprobs - ref_logprobs
    if estimator == "k3":
        x = (ref_logprobs - logprobs).clamp(-K3_LOG_RATIO_CLAMP, K3_LOG_RATIO_CLAMP)
        return (torch.exp(x) - x - 1.0).clamp(-KL_CLAMP, KL_CLAMP)
    raise ValueError(f"unknown KL estimator {estimator!r}")


def tis_weights(old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, valid: torch.Tensor,
                level: str, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated importance weights pi_old / mu of the sampled tokens, and which were truncated.

    token: w_t = min(exp(lp_old_t - lp_mu_t), cap). sequence: w = min(exp(sum_t (lp_old_t -
    lp_mu_t)), cap) over the row's valid tokens, on each of them. The log-weight is clamped at
    log(cap) before exp, so a long sequence's sum cannot overflow to inf. Detached (the weight
    corrects the sampling distribution; it is not a quantity to optimise); 0 outside `valid`.
    """
    log_w = torch.where(valid, (old_logprobs - rollout_logprobs).detach().float(), 0.0)
    if level == "sequence":
        log_w = log_w.sum(-1, keepdim=True).expand_as(old_logprobs)
    elif level != "token":
        raise ValueError(f"unknown TIS level {level!r}")
    log_cap = math.log(cap)
    return torch.exp(log_w.clamp(max=log_cap)) * valid, (log_w > log_cap) & valid


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
    """SENT token loss: unclipped PG plus a |log r| (or k3 reference KL) penalty on the tokens of the
    low-entropy set L picked by covariance (`selectors.sent_selection`).

    A deliberate deviation from the released code, not a bug to "fix" back: called from its actor,
    that code indexes the advantages with an integer (0/1) mask, which selects whole rows instead of
    tokens, so its covariance is computed over the wrong entries. Here the covariance is taken over
    the tokens of L, as the paper (arXiv 2512.04359) intends.
    """
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


def _masked_mean(x: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean of x over the valid tokens; 0 when there are none (an all-padding micro-batch)."""
    return float(torch.where(valid, x.float(), 0.0).sum()) / max(1, int(valid.sum()))


def _rollout_kl_metrics(old: torch.Tensor, rollout: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """KL(mu || pi_old) between the sampler's policy mu and the learner's, over the valid tokens.

    The tokens were sampled from mu, so E_mu[lp_mu - lp_old] (k1) and E_mu[r - 1 - log r] with
    r = pi_old / mu (k3, >= 0 per token) both estimate it; verl reports the same pair as its
    training/rollout mismatch KL.
    """
    log_r = old - rollout
    return {"rollout_kl_k1": _masked_mean(-log_r, valid),
            "rollout_kl_k3": _masked_mean(torch.exp(log_r) - 1.0 - log_r, valid)}


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
    """The learner's one call: objective `cfg.type` + TIS weight and forking mask (PG term only) +
    aggregation + ref KL + entropy bonus."""
    valid = inputs.mask > 0
    stats = TokenStats(
        valid=valid,
        logprobs=inputs.logprobs.detach(),
        old_logprobs=inputs.old_logprobs.detach(),
        advantages=inputs.advantages.detach(),
        entropy=None if inputs.entropy is None else inputs.entropy.detach(),
    )
    terms = get_policy_loss(cfg.type)(inputs, cfg, stats)
    metrics = dict(terms.metrics)
    pg = terms.pg
    if cfg.tis is not None:
        if inputs.rollout_logprobs is None:
            raise ValueError("tis is configured but LossInputs.rollout_logprobs is None")
        w, truncated = tis_weights(stats.old_logprobs, inputs.rollout_logprobs, valid, cfg.tis.level,
                                   cfg.tis.cap)
        pg = pg * w.to(pg.dtype)
        metrics.update(tis_weight_mean=_masked_mean(w, valid), tis_frac_truncated=_frac(truncated, valid))
    agg = dict(
        num_tokens=inputs.global_num_tokens,
        num_seqs=inputs.global_num_seqs,
        norm_constant=cfg.agg_norm_constant,
    )

    m = terms.agg_mask
    fork = None
    if cfg.forking is not None:
        h = stats.require_entropy("forking mask")
        fork = forking_mask(h, valid, cfg.forking.rho, cfg.forking.variant)
        metrics["frac_forking_kept"] = _frac(fork, valid)
    if fork is None:
        pg_loss = aggregate(pg, m, cfg.agg, **_subset_agg(agg, m, valid))
    elif cfg.forking.normalise == "all":
        pg_loss = aggregate(pg * fork.to(pg.dtype), m, cfg.agg, **_subset_agg(agg, m, valid))
    else:
        sel_mask = m * fork.to(m.dtype)
        pg_loss = aggregate(pg, sel_mask, cfg.agg, **_subset_agg(agg, sel_mask, valid))
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
    # verl's ppo_kl: k1 estimate of KL(pi_old || pi), over the tokens sampled before the update
    metrics["ppo_kl"] = _masked_mean(stats.old_logprobs - stats.logprobs, valid)
    if inputs.rollout_logprobs is not None:
        metrics.update(_rollout_kl_metrics(stats.old_logprobs, inputs.rollout_logprobs.detach(), valid))
    metrics.update(_cov_metrics(stats))
    metrics["loss"] = float(loss.detach())
    return loss, metrics
