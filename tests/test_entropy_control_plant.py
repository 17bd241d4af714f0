"""The set-point on a plant that mimics on-policy updates (issue 21, item 1).

The plant is a fake learner whose entropy moves only through what the actuators do to the real
loss's gradient: every optimizer update sharpens the policy (H relaxes toward FLOOR at COLLAPSE
per update, the PG term's pull) and each stage pushes it back up in proportion to the gradient it
adds to ``compute_policy_loss`` on a micro-batch, measured against the same loss with the stage at
its minimum (``response``), normalised by that stage's response at its maximum off-policy (where
every actuator acts). The plant's updates are all on-policy (lp == lp_old, as the first mini-batch
of every step): an actuator whose gradient is 0 there moves nothing, which is what KL-Cov's beta
does; the planted KL-Cov-only controller below must fail both the silence check and the tracking.

Per update: H <- H - COLLAPSE (H - FLOOR) + GAIN sum_i w_i r_i. With one stage at x of its range
and a linear response (the entropy bonus), H_eq = FLOOR + GAIN x / COLLAPSE = 0.1 + 2 x.
"""
import random

import pytest
import torch

from forkrl.learner.loss_config import ClipCovLoss, KLCovLoss, PPOClipLoss
from forkrl.learner.losses import LossInputs, compute_policy_loss
from forkrl.orchestrator.entropy_control import EntropyControlConfig, EntropyController, target_at, with_actuator
from forkrl.orchestrator.tracking import tracking_stats

COLLAPSE, FLOOR, GAIN, UPDATES = 0.05, 0.1, 0.1, 4


def _batch(on_policy: bool):
    """8 sequences x 16 tokens, lp in [-4, -0.05], advantages +-1.5 per sequence (half each): the
    centred cov (lp - mean lp) A spans about (-3, 3), so Clip-Cov's (1, 5) band holds candidates."""
    g = torch.Generator().manual_seed(0)
    lp = -0.05 - 3.95 * torch.rand(8, 16, generator=g, dtype=torch.float64)
    adv = torch.tensor([1.5, -1.5] * 4, dtype=torch.float64)[:, None].expand(8, 16).clone()
    old = lp.clone() if on_policy else lp - 0.1 * torch.randn(8, 16, generator=g, dtype=torch.float64)
    ent = 0.5 + torch.rand(8, 16, generator=g, dtype=torch.float64)
    return lp, old, adv, ent


def _grad(loss_cfg, on_policy: bool) -> torch.Tensor:
    lp, old, adv, ent = _batch(on_policy)
    lp, ent = lp.requires_grad_(), ent.requires_grad_()
    inputs = LossInputs(logprobs=lp, old_logprobs=old, advantages=adv, mask=torch.ones(8, 16, dtype=torch.float64),
                        entropy=ent, generator=torch.Generator().manual_seed(1))
    loss, _ = compute_policy_loss(inputs, loss_cfg)
    g_lp, g_ent = torch.autograd.grad(loss, [lp, ent], allow_unused=True)
    return torch.cat([torch.zeros(128, dtype=torch.float64) if g is None else g.flatten() for g in (g_lp, g_ent)])


def response(loss_cfg, cfg: EntropyControlConfig, stage: int, value: float, on_policy: bool) -> float:
    """Norm of the gradient stage `stage` at `value` adds to the loss (all other stages at their min)."""
    lows = [lo for lo, _ in cfg.stage_bounds()]
    at = list(lows)
    at[stage] = value
    pack = (lambda v: v) if isinstance(cfg.actuator, list) else (lambda v: v[0])
    g = _grad(with_actuator(loss_cfg, cfg.actuator, pack(at)), on_policy)
    g0 = _grad(with_actuator(loss_cfg, cfg.actuator, pack(lows)), on_policy)
    return float((g - g0).norm())


def silent_stages(loss_cfg, cfg: EntropyControlConfig) -> list[str]:
    """Stages whose on-policy response at their maximum is 0: absent from the on-policy update."""
    return [n for i, (n, (_, hi)) in enumerate(zip(cfg.stages(), cfg.stage_bounds()))
            if response(loss_cfg, cfg, i, hi, on_policy=True) == 0.0]


def run_plant(loss_cfg, cfg: EntropyControlConfig, steps: int = 150, h0: float = 2.1,
              weights=(1.0,), noise: float = 0.02, seed: int = 0):
    """Closed loop on the on-policy plant; returns (steps, measured H, targets, actuator values)."""
    initial = tuple(lo for lo, _ in cfg.stage_bounds())
    c = EntropyController(cfg, initial=initial if isinstance(cfg.actuator, list) else initial[0])
    scale = [response(loss_cfg, cfg, i, hi, on_policy=False) for i, (_, hi) in enumerate(cfg.stage_bounds())]
    rng, h = random.Random(seed), h0
    out = ([], [], [], [])
    for step in range(steps):
        measured = h + rng.gauss(0.0, noise)
        value = c.update(step, measured)
        for arr, v in zip(out, (step, measured, target_at(cfg.target, step), value)):
            arr.append(v)
        vals = list(value) if isinstance(value, tuple) else [value]
        push = sum(w * response(loss_cfg, cfg, i, v, on_policy=True) / s
                   for i, (w, v, s) in enumerate(zip(weights, vals, scale)))
        for _ in range(UPDATES):  # every update of the step is on-policy
            h += -COLLAPSE * (h - FLOOR) + GAIN * push
    return out


def pi(actuator, bounds, target, **kw):
    return EntropyControlConfig(enabled=True, actuator=actuator, bounds=bounds, target=target, **kw)


def test_kl_cov_beta_is_silent_on_policy_and_the_entropy_bonus_and_clip_cov_are_not():
    kl = pi("kl_cov_beta", (0.1, 5.0), 1.0)
    assert silent_stages(KLCovLoss(kappa=0.05), kl) == ["kl_cov_beta"]
    assert response(KLCovLoss(kappa=0.05), kl, 0, 5.0, on_policy=False) > 0  # it does act off-policy
    assert silent_stages(PPOClipLoss(), pi("entropy_coef", (0.0, 0.01), 1.0)) == []
    assert silent_stages(ClipCovLoss(), pi("clip_cov_ratio", (0.0, 0.2), 1.0)) == []
    cascade = pi(["entropy_coef", "clip_cov_ratio"], [(0.0, 0.01), (0.0, 0.2)], 1.0)
    assert silent_stages(ClipCovLoss(), cascade) == []


@pytest.mark.parametrize("target", [1.0, 0.5])
def test_entropy_bonus_holds_the_set_point_on_the_on_policy_plant(target):
    steps, h, tgt, u = run_plant(PPOClipLoss(), pi("entropy_coef", (0.0, 0.01), target))
    st = tracking_stats(steps, h, tgt)
    assert st["first_in_band"] is not None and st["first_in_band"] < 40
    assert st["frac_in_band"] >= 0.8 and st["held"]
    assert 0.0 < u[-1] < 0.01  # held inside its range, not pinned at a bound


def test_planted_kl_cov_only_controller_fails_on_the_on_policy_plant():
    """beta goes to its max and nothing happens: entropy falls through the band once on its way
    from 2.1 to the floor (so it is scored from there) and stays out of it."""
    steps, h, tgt, u = run_plant(KLCovLoss(kappa=0.05), pi("kl_cov_beta", (0.1, 5.0), 1.0))
    st = tracking_stats(steps, h, tgt)
    assert not st["held"] and st["frac_in_band"] < 0.05
    assert u[-1] == 5.0 and h[-1] < 0.2


def test_cascade_hands_over_to_clip_cov_once_the_bonus_saturates():
    """Each stage carries half the plant's authority (weights 0.5, 0.5): the bonus alone reaches
    H_eq = 0.1 + 1.0 = 1.1 < 1.5, so holding 1.5 needs Clip-Cov's ratio too; at 0.6 the bonus suffices
    and the ratio stays at its min."""
    loss = ClipCovLoss()
    cfg = pi(["entropy_coef", "clip_cov_ratio"], [(0.0, 0.01), (0.0, 0.2)], 1.5)
    steps, h, tgt, u = run_plant(loss, cfg, weights=(0.5, 0.5))
    assert tracking_stats(steps, h, tgt)["held"]
    assert u[-1][0] == 0.01 and 0.0 < u[-1][1] < 0.2
    steps, h, tgt, u = run_plant(loss, cfg.model_copy(update={"target": 0.6}), weights=(0.5, 0.5))
    assert tracking_stats(steps, h, tgt)["held"]
    assert 0.0 < u[-1][0] < 0.01 and u[-1][1] == 0.0


def test_skywork_rule_on_the_same_plant_is_reported_not_required_to_hold():
    """The peer's rule (adaptive, delta 0.0005 of a [0, 0.01] range) on the same plant: it reaches the
    band, and its bang-bang gating (bonus off whenever entropy is above target) keeps it cycling around
    the target; the figure is what the set-point report prints beside the PI's."""
    cfg = pi("entropy_coef", (0.0, 0.01), 1.0, mode="adaptive", delta=0.0005)
    steps, h, tgt, u = run_plant(PPOClipLoss(), cfg)
    st = tracking_stats(steps, h, tgt)
    assert st["first_in_band"] is not None
    assert set(u[st["first_in_band"]:]) != {u[-1]}  # it keeps switching
