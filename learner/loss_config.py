"""Policy-loss configuration: one tagged union keyed by `type`, plus the composable controls.

Every loss shares `_PolicyLossBase` (aggregation, forking mask, truncated importance sampling, entropy
bonus, reference KL, selection scope), so any control composes with any objective in one
`compute_policy_loss` call. Validators only validate; nothing here derives values. Defaults cite the
paper or reference code they come from (and docs/ALGORITHMS.md).
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

AggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ForkingConfig(_Strict):
    """The 80/20 forking-token mask (Wang et al., arXiv 2506.01939): keep the PG term only on the
    highest-entropy tokens. Multiplies the policy-gradient term only, never penalties or bonuses."""

    rho: float = Field(
        0.2, gt=0.0, le=1.0,
        description="Fraction of valid tokens kept: k = max(1, ceil(rho N)); 0.2 is the paper's top-20%.",
    )
    normalise: Literal["selected", "all"] = Field(
        "selected",
        description="token-mean denominator of the PG term: the selected count (reference code, default) "
        "or all valid tokens (the paper's formula).",
    )
    variant: Literal["topk", "quantile"] = Field(
        "topk",
        description="topk keeps exactly k tokens; quantile keeps H >= quantile(H, 1 - rho), >= k under ties.",
    )


class RefKLConfig(_Strict):
    """KL to a frozen reference policy, added as coef * agg(kl)."""

    coef: float = Field(0.001, ge=0.0, description="Weight of the KL term; 0.001 is SENT's released value.")
    estimator: Literal["k1", "k3"] = Field(
        "k3", description="k1 = lp - lp_ref; k3 = exp(x) - x - 1 with x = lp_ref - lp (low variance, >= 0)."
    )


class TISConfig(_Strict):
    """Truncated importance sampling (TIS) from the sampler's policy to the learner's.

    The engine samples from a behaviour policy mu (its own kernels and precision and, in async mode, an
    older weight version), while the loss's ratio is taken against the learner's old (proximal) policy
    pi_old. Weighting the PG term by w = pi_old / mu, truncated at `cap` and detached, corrects the
    gap (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training";
    verl's rollout correction `rollout_is`, TRL's vLLM importance sampling correction).
    """

    level: Literal["token", "sequence"] = Field(
        "token",
        description="token: w_t = min(exp(lp_old_t - lp_rollout_t), cap); sequence: one w per sequence, "
        "min(exp(sum_t (lp_old_t - lp_rollout_t)), cap) over its valid tokens, on each of its tokens.",
    )
    cap: float = Field(
        2.0, gt=0.0,
        description="Truncation C of the weight (w <= C); 2 is verl's rollout_is_threshold default.",
    )


class _PolicyLossBase(_Strict):
    agg: AggMode = Field(
        "token-mean",
        description="loss_agg_mode over valid tokens (docs/ALGORITHMS.md §0); "
        "token-mean is DAPO's and the Clip/KL-Cov recipes'.",
    )
    agg_norm_constant: Optional[float] = Field(
        None,
        gt=0.0,
        description="C of seq-mean-token-sum-norm (Dr.GRPO): a constant such as the max response "
        "length; required for that mode.",
    )
    forking: Optional[ForkingConfig] = Field(
        None,
        description="Forking-token mask on the PG term; None disables it.",
    )
    tis: Optional[TISConfig] = Field(
        None,
        description="Truncated importance sampling from the sampler's log-probs to the learner's old "
        "log-probs, on the PG term; None disables it.",
    )
    entropy_coef: float = Field(
        0.0,
        ge=0.0,
        description="Entropy bonus l - c_H agg(H). Off by default: reported brittle (1e-4..1e-3 no "
        "effect, 0.01 explodes; Cui et al.). Its gradient c_H d agg(H) / d theta involves no ratio, so it "
        "acts on every update, the on-policy first mini-batch included (the entropy set-point's first "
        "actuator, orchestrator/entropy_control.py).",
    )
    ref_kl: Optional[RefKLConfig] = Field(
        None,
        description="Reference-policy KL term; None disables it (DAPO / Clip-Cov / KL-Cov recipes use "
        "none).",
    )
    scope: Literal["micro", "mini", "global"] = Field(
        "micro",
        description="Selection scope S the selectors rank over. Only 'micro' (what all three reference "
        "codes use) is implemented: the learner hands the loss one micro-batch, and the job config "
        "rejects 'mini' and 'global' until the learner gathers a mini-batch or all ranks for them.",
    )

    @model_validator(mode="after")
    def _norm_constant_present(self):
        if self.agg == "seq-mean-token-sum-norm" and self.agg_norm_constant is None:
            raise ValueError(
                "agg 'seq-mean-token-sum-norm' needs agg_norm_constant (e.g. the max response length)"
            )
        return self

    def uses_reference(self) -> bool:
        """Whether the loss reads reference log-probs (so the learner must load a reference model)."""
        return self.ref_kl is not None and self.ref_kl.coef > 0

    def needs_entropy_grad(self) -> bool:
        """Whether the loss differentiates through the entropy (the bonus does; selectors only rank)."""
        return self.entropy_coef > 0


class PPOClipLoss(_PolicyLossBase):
    """PPO-clip; eps_high 0.28 is DAPO's clip-higher (arXiv 2503.14476)."""

    type: Literal["ppo_clip"] = "ppo_clip"
    eps_low: float = Field(0.2, gt=0.0, le=1.0, description="Lower clip 1 - eps_low; 0.2 from PPO / DAPO.")
    eps_high: float = Field(
        0.2, gt=0.0,
        description="Upper clip 1 + eps_high; 0.2 PPO, 0.28 DAPO clip-higher.",
    )
    dual_clip: Optional[float] = Field(
        None, gt=1.0,
        description="Dual-clip constant c for A < 0 (3 in Ye et al. 2020); None disables.",
    )


class ClipCovLoss(_PolicyLossBase):
    """Clip-Cov (Cui et al., arXiv 2505.22617 §4.2; verl `compute_policy_loss_clip_cov`)."""

    type: Literal["clip_cov"] = "clip_cov"
    eps_low: float = Field(
        1.0, gt=0.0, le=1.0,
        description="PPO lower clip; the paper's recipes widen it to 1.",
    )
    eps_high: float = Field(1.0, gt=0.0, description="PPO upper clip; the paper's recipes widen it to 1.")
    dual_clip: Optional[float] = Field(
        None, gt=1.0,
        description="Dual-clip constant c for A < 0; None disables.",
    )
    ratio: float = Field(
        2e-4, ge=0.0, le=1.0,
        description="Fraction r of valid tokens detached: floor(r N); 2e-4 from the paper.",
    )
    lb: float = Field(1.0, description="Candidates need cov > lb (strict); 1 from the paper.")
    ub: float = Field(5.0, description="Candidates need cov < ub (strict); 5 from the paper.")
    min_one: bool = Field(
        True,
        description="Pick max(1, floor(r N)) as the reference code does; False uses floor(r N), so ratio 0 "
        "is PPO-clip.",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self):
        if not self.lb < self.ub:
            raise ValueError(f"clip_cov needs lb < ub, got lb={self.lb} ub={self.ub}")
        return self


class KLCovLoss(_PolicyLossBase):
    """KL-Cov (Cui et al. §4.2): unclipped PG plus beta |lp - lp_old| on the top-kappa tokens by cov."""

    type: Literal["kl_cov"] = "kl_cov"
    beta: float = Field(1.0, ge=0.0, description="Penalty weight; 1 in the paper's recipes.")
    kappa: float = Field(
        2e-3, gt=0.0, le=1.0,
        description="Fraction penalised: max(1, floor(kappa N)); 2e-3 for 7B, 2e-4 for 32B.",
    )


class SENTLoss(_PolicyLossBase):
    """SENT token loss (arXiv 2512.04359, released code "v2")."""

    type: Literal["sent"] = "sent"
    version: Literal["v2", "v1"] = Field(
        "v2",
        description="v2 (released code, default): 2beta/0.5beta on top/bottom-n of L; v1: beta |log r| on "
        "all of L, loss over L only.",
    )
    beta: float = Field(0.1, ge=0.0, description="Penalty weight; 0.1 in the released code.")
    kappa: float = Field(
        2e-4, gt=0.0, le=1.0,
        description="n = max(1, floor(kappa |L|)); 2e-4 in the released code.",
    )
    low_frac: float = Field(
        0.8, gt=0.0, le=1.0,
        description="|L| = max(1, floor(low_frac N)) lowest-entropy tokens; 0.8 in the paper.",
    )
    penalty: Literal["abs_log_ratio", "ref_kl"] = Field(
        "abs_log_ratio",
        description="Penalty per selected token: |lp - lp_old| (released code, default) or the k3 "
        "KL(pi || pi_ref) "
        "as the paper's figure writes it (needs ref_logprobs).",
    )
    ref_kl: Optional[RefKLConfig] = Field(
        RefKLConfig(coef=0.001, estimator="k3"),
        description="SENT adds 0.001 token-mean(k3 KL to reference) in its released code.",
    )

    def uses_reference(self) -> bool:
        """The reference KL term, or the paper's penalty KL(pi || pi_ref), reads reference log-probs."""
        return super().uses_reference() or self.penalty == "ref_kl"


class GSPOLoss(_PolicyLossBase):
    """GSPO (Zheng et al., arXiv 2507.18071): one clipped ratio per sequence."""

    type: Literal["gspo"] = "gspo"
    eps_low: float = Field(
        3e-4, gt=0.0, le=1.0,
        description="Sequence-ratio lower clip; 3e-4 from the paper.",
    )
    eps_high: float = Field(4e-4, gt=0.0, description="Sequence-ratio upper clip; 4e-4 from the paper.")
    agg: AggMode = Field("seq-mean-token-mean", description="GSPO averages per sequence first.")


class CISPOLoss(_PolicyLossBase):
    """CISPO (MiniMax-M1, arXiv 2506.13585): clipped, stop-gradient IS weight times A lp."""

    type: Literal["cispo"] = "cispo"
    eps_low: float = Field(
        1.0, gt=0.0, le=1.0,
        description="No lower bound in the paper (eps_low 'set large'); 1 makes the bound 0.",
    )
    eps_high: float = Field(
        0.28, gt=0.0,
        description="Only eps_high is tuned in the paper [INFERRED default 0.28, as Trinity-RFT].",
    )


PolicyLossConfig = Annotated[
    Union[PPOClipLoss, ClipCovLoss, KLCovLoss, SENTLoss, GSPOLoss, CISPOLoss], Field(discriminator="type")
]
