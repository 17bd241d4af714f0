"""Policy losses (ALGORITHMS.md §1-§5): every "Testable" bullet of the spec, on CPU tensors."""
import math

import pytest
import torch
from pydantic import TypeAdapter, ValidationError

import learner.selectors as selectors
from learner.aggregation import aggregate
from learner.loss_config import (
    CISPOLoss,
    ClipCovLoss,
    ForkingConfig,
    GSPOLoss,
    KLCovLoss,
    PolicyLossConfig,
    PPOClipLoss,
    RefKLConfig,
    SENTLoss,
)
from learner.losses import LossInputs, compute_policy_loss, get_policy_loss, kl_estimate
from learner.selectors import centred_cov, forking_mask, sent_selection, TokenStats

AGGS = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]


def make(B=6, T=12, seed=0, on_policy=False, adv_scale=1.0, lp_spread=1.0, drift=0.3, full=False):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.full((B,), T) if full else torch.randint(T // 2, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    old = -torch.rand(B, T, generator=g) * 2 * lp_spread
    lp = old.clone() if on_policy else old + drift * torch.randn(B, T, generator=g)
    adv = (torch.randn(B, 1, generator=g) * adv_scale).expand(B, T).clone()
    ent = torch.rand(B, T, generator=g) * 3
    return dict(logprobs=lp, old_logprobs=old, advantages=adv, mask=mask, entropy=ent)


def run(d, cfg, **extra):
    lp = d["logprobs"].clone().requires_grad_()
    kw = {k: v for k, v in d.items() if k != "logprobs"}
    kw.update(extra)
    loss, metrics = compute_policy_loss(LossInputs(logprobs=lp, **kw), cfg)
    loss.backward()
    return loss.detach(), lp.grad, metrics


def agg_kw(mode):
    return {"agg": mode, "agg_norm_constant": 16.0} if mode == "seq-mean-token-sum-norm" else {"agg": mode}


def token_mean(x, m):
    return (x * m).sum() / m.sum()


# ---------- §5 primitives and §1 base objectives ----------


@pytest.mark.parametrize("mode", AGGS)
@pytest.mark.parametrize(
    "cfg_cls,extra",
    [(PPOClipLoss, {}), (PPOClipLoss, {"eps_high": 0.28}), (KLCovLoss, {}), (GSPOLoss, {}), (ClipCovLoss, {"ratio": 0.0, "min_one": False})],
)
def test_ratio_one_gives_agg_of_minus_A(cfg_cls, extra, mode):
    d = make(on_policy=True)
    loss, _, _ = run(d, cfg_cls(**extra, **agg_kw(mode)))
    expected = aggregate(-d["advantages"], d["mask"], mode, norm_constant=16.0)
    torch.testing.assert_close(loss, expected)


def test_ppo_clip_matches_formula_and_reports_clip_fractions():
    d = make(drift=0.6)
    loss, grad, m = run(d, PPOClipLoss(eps_high=0.28))
    r = torch.exp(d["logprobs"] - d["old_logprobs"])
    A = d["advantages"]
    l = torch.maximum(-A * r, -A * r.clamp(0.8, 1.28))
    torch.testing.assert_close(loss, token_mean(l, d["mask"]))
    valid = d["mask"] > 0
    clipped = (-A * r.clamp(0.8, 1.28) > -A * r) & valid
    assert m["clipfrac_high"] + m["clipfrac_low"] == pytest.approx(float(clipped.sum()) / float(valid.sum()))
    assert m["clipfrac_high"] > 0 and m["clipfrac_low"] > 0
    assert torch.all(grad[clipped] == 0) and torch.all(grad[valid & ~clipped] != 0)


def test_dual_clip_caps_negative_advantage_loss():
    d = make(on_policy=True, full=True)
    d["advantages"] = -torch.ones_like(d["advantages"])
    d["logprobs"] = d["old_logprobs"] + 2.0  # r = e^2 > 3
    loss, grad, m = run(d, PPOClipLoss(dual_clip=3.0))
    torch.testing.assert_close(loss, torch.tensor(3.0))
    assert m["clipfrac_dual"] == 1.0 and torch.all(grad == 0)


def test_cispo_never_drops_a_gradient():
    d = make(drift=1.5)
    loss, grad, m = run(d, CISPOLoss(eps_high=0.28))
    r = torch.exp(d["logprobs"] - d["old_logprobs"])
    w = r.clamp(0.0, 1.28)
    expected = -w * d["advantages"] * d["mask"] / d["mask"].sum()
    torch.testing.assert_close(grad, expected)
    assert m["clipfrac_high"] > 0


def test_gspo_gradient_equals_sequence_level_objective():
    d = make(drift=1e-4, on_policy=False)
    cfg = GSPOLoss()
    _, grad, _ = run(d, cfg)
    lp = d["logprobs"].clone().requires_grad_()
    m = d["mask"]
    s = torch.exp(((lp - d["old_logprobs"]) * m).sum(-1) / m.sum(-1))
    A = d["advantages"][:, 0]
    l = torch.maximum(-A * s, -A * s.clamp(1 - 3e-4, 1 + 4e-4))
    l.mean().backward()
    torch.testing.assert_close(grad, lp.grad)


def test_all_equal_group_has_zero_gradient():
    d = make()
    d["advantages"] = torch.zeros_like(d["advantages"])
    for cfg in (PPOClipLoss(), GSPOLoss(), CISPOLoss(), KLCovLoss(beta=0.0)):
        _, grad, _ = run(d, cfg)
        assert torch.all(grad == 0), cfg.type


# ---------- aggregation ----------


def test_equal_lengths_token_mean_equals_seq_mean_token_mean():
    d = make(full=True)
    a, _, _ = run(d, PPOClipLoss(agg="token-mean"))
    b, _, _ = run(d, PPOClipLoss(agg="seq-mean-token-mean"))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", AGGS)
def test_sharded_batch_sums_to_unsharded_loss_and_gradient(mode):
    d = make(B=8, seed=3, drift=0.5)
    d["ref_logprobs"] = d["old_logprobs"] - 0.1
    d["entropy"] = d["entropy"].clone().requires_grad_()
    cfg = PPOClipLoss(eps_high=0.28, ref_kl=RefKLConfig(coef=0.01), entropy_coef=0.01, **agg_kw(mode))
    full_loss, full_grad, _ = run(d, cfg)
    n_tok, n_seq = float(d["mask"].sum()), float(d["mask"].shape[0])
    shard_losses, shard_grads = [], []
    for rows in (slice(0, 3), slice(3, 5), slice(5, 8)):
        part = {k: (v[rows].detach().requires_grad_(v.requires_grad) if v is not None else v) for k, v in d.items()}
        loss, grad, _ = run(part, cfg, global_num_tokens=n_tok, global_num_seqs=n_seq)
        shard_losses.append(loss)
        shard_grads.append(grad)
    torch.testing.assert_close(sum(shard_losses), full_loss)
    torch.testing.assert_close(torch.cat(shard_grads), full_grad)


def test_global_normaliser_equal_to_local_count_changes_nothing_under_forking():
    d = make()
    cfg = PPOClipLoss(forking=ForkingConfig())
    a, ga, _ = run(d, cfg)
    b, gb, _ = run(d, cfg, global_num_tokens=float(d["mask"].sum()), global_num_seqs=float(d["mask"].shape[0]))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


# ---------- §2 Clip-Cov ----------


def spread_inputs(seed=0):
    """Advantages ±2 and widely spread log-probs, so many tokens have cov in (1, 5)."""
    d = make(B=8, T=40, seed=seed, adv_scale=2.0, lp_spread=2.0, drift=0.4)
    return d


def test_clip_cov_without_candidates_is_ppo_clip():
    d = spread_inputs()
    a, ga, _ = run(d, ClipCovLoss(lb=1e6, ub=1e7, eps_low=0.2, eps_high=0.28))
    b, gb, _ = run(d, PPOClipLoss(eps_low=0.2, eps_high=0.28))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


def test_clip_cov_floor_flag_at_ratio_zero_is_ppo_clip():
    d = spread_inputs()
    a, ga, m = run(d, ClipCovLoss(ratio=0.0, min_one=False))
    b, gb, _ = run(d, PPOClipLoss(eps_low=1.0, eps_high=1.0))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)
    assert m["frac_clip_cov_zeroed"] == 0.0


@pytest.mark.parametrize("ratio", [2e-4, 0.02, 0.5])
def test_clip_cov_zeroes_exactly_the_spec_count_of_eligible_tokens(ratio):
    d = spread_inputs()
    cfg = ClipCovLoss(ratio=ratio, eps_low=0.2, eps_high=0.2)
    loss, grad, _ = run(d, cfg, generator=torch.Generator().manual_seed(1))
    valid = d["mask"] > 0
    A, r = d["advantages"], torch.exp(d["logprobs"] - d["old_logprobs"])
    l1, l2 = -A * r, -A * r.clamp(0.8, 1.2)
    clipped = l2 > l1
    cov = centred_cov(d["logprobs"], A, valid)
    cand = valid & ~clipped & (cov > 1) & (cov < 5)
    zeroed = valid & ~clipped & (grad == 0)
    n = int(valid.sum())
    assert int(cand.sum()) > 3
    assert int(zeroed.sum()) == min(max(1, math.floor(ratio * n)), int(cand.sum()))
    assert torch.all(cand[zeroed])  # strictly inside (lb, ub), valid, unclipped
    kept = torch.maximum(l1, l2) * (~zeroed)
    torch.testing.assert_close(loss, (kept * d["mask"]).sum() / d["mask"].sum())  # still in the denominator


def test_clip_cov_never_picks_ppo_clipped_tokens():
    d = spread_inputs()
    A = d["advantages"]
    d["logprobs"] = d["old_logprobs"] + torch.where(A > 0, 1.0, -1.0)  # every token clipped by PPO
    a, ga, m = run(d, ClipCovLoss(ratio=0.5, eps_low=0.2, eps_high=0.2))
    b, gb, _ = run(d, PPOClipLoss())
    torch.testing.assert_close(a, b)
    assert m["frac_clip_cov_zeroed"] == 0.0


def test_clip_cov_same_seed_same_pick():
    d = spread_inputs()
    cfg = ClipCovLoss(ratio=0.05)
    picks = [run(d, cfg, generator=torch.Generator().manual_seed(s))[1] == 0 for s in (7, 7, 8)]
    assert torch.equal(picks[0], picks[1])
    assert not torch.equal(picks[0], picks[2])


def test_cov_invariant_to_constant_shifts():
    d = make()
    valid = d["mask"] > 0
    base = centred_cov(d["logprobs"], d["advantages"], valid)
    torch.testing.assert_close(centred_cov(d["logprobs"] - 3.0, d["advantages"], valid), base)
    torch.testing.assert_close(centred_cov(d["logprobs"], d["advantages"] + 5.0, valid), base)
    assert torch.all(base[~valid] == 0)


# ---------- §2 KL-Cov ----------


def test_kl_cov_beta_zero_is_unclipped_token_mean_pg():
    d = make(drift=0.8)
    loss, _, _ = run(d, KLCovLoss(beta=0.0))
    r = torch.exp(d["logprobs"] - d["old_logprobs"])
    torch.testing.assert_close(loss, token_mean(-d["advantages"] * r, d["mask"]))
    ppo, _, _ = run(d, PPOClipLoss())
    assert not torch.allclose(loss, ppo)


@pytest.mark.parametrize("kappa", [2e-3, 0.1])
def test_kl_cov_penalises_top_k_by_cov_with_gradient_beta_sign(kappa):
    d = make(B=8, T=30, drift=0.5)
    beta = 0.7
    _, g1, m = run(d, KLCovLoss(beta=beta, kappa=kappa))
    _, g0, _ = run(d, KLCovLoss(beta=0.0, kappa=kappa))
    valid = d["mask"] > 0
    n = int(valid.sum())
    k = max(1, math.floor(kappa * n))
    diff = (g1 - g0) * d["mask"].sum()  # token-mean undone
    penalised = diff != 0
    assert int(penalised.sum()) == k and m["frac_kl_cov_penalised"] == pytest.approx(k / n)
    cov = centred_cov(d["logprobs"], d["advantages"], valid)
    assert cov[penalised].min() >= cov[valid & ~penalised].max()
    sign = torch.sign(d["logprobs"] - d["old_logprobs"])
    torch.testing.assert_close(diff[penalised], beta * sign[penalised])


def test_kl_cov_penalty_and_gradient_vanish_at_ratio_one():
    d = make(on_policy=True)
    a, ga, _ = run(d, KLCovLoss(beta=1.0, kappa=0.5))
    b, gb, _ = run(d, KLCovLoss(beta=0.0, kappa=0.5))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


# ---------- §3 forking tokens ----------


@pytest.mark.parametrize("rho", [0.01, 0.2, 0.5])
def test_forking_mask_selects_exactly_k_valid_highest_entropy_tokens(rho):
    d = make(B=5, T=17)
    valid = d["mask"] > 0
    sel = forking_mask(d["entropy"], valid, rho)
    n = int(valid.sum())
    assert int(sel.sum()) == max(1, math.ceil(rho * n))
    assert torch.all(valid[sel])
    h = d["entropy"]
    assert h[sel].min() >= h[valid & ~sel].max()


def test_forking_quantile_keeps_ties():
    h = torch.tensor([[0.1, 0.5, 0.5, 0.5, 0.2]])
    valid = torch.ones_like(h, dtype=torch.bool)
    assert int(forking_mask(h, valid, 0.2, "topk").sum()) == 1
    assert int(forking_mask(h, valid, 0.2, "quantile").sum()) == 3


def test_forking_rho_one_is_the_base_loss():
    d = make(drift=0.5)
    for base in (PPOClipLoss(eps_high=0.28), KLCovLoss(kappa=0.1)):
        a, ga, _ = run(d, base)
        b, gb, _ = run(d, base.model_copy(update={"forking": ForkingConfig(rho=1.0)}))
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ga, gb)


def test_forking_mask_ignores_advantages_and_gates_only_pg():
    d = make(drift=0.5)
    cfg = PPOClipLoss(forking=ForkingConfig(rho=0.3))
    _, g1, _ = run(d, cfg)
    d2 = dict(d, advantages=d["advantages"] * -3.0 + 1.0)
    _, g2, _ = run(d2, cfg)
    sel = forking_mask(d["entropy"], d["mask"] > 0, 0.3)
    assert torch.all(g1[~sel] == 0) and torch.all(g2[~sel] == 0)
    # composed with KL-Cov, the penalty still reaches unselected tokens
    _, g3, _ = run(d, KLCovLoss(kappa=1.0, forking=ForkingConfig(rho=0.3)))
    assert torch.any(g3[(d["mask"] > 0) & ~sel] != 0)


def test_forking_normalisations_differ_by_selected_fraction():
    d = make()
    a, _, m = run(d, PPOClipLoss(forking=ForkingConfig(normalise="selected")))
    b, _, _ = run(d, PPOClipLoss(forking=ForkingConfig(normalise="all")))
    n = float(d["mask"].sum())
    n_sel = max(1, math.ceil(0.2 * n))
    torch.testing.assert_close(b, a * n_sel / n)
    assert m["frac_forking_kept"] == pytest.approx(n_sel / n)


# ---------- §4 SENT ----------


def sent_stats(d):
    return TokenStats(d["mask"] > 0, d["logprobs"], d["old_logprobs"], d["advantages"], d["entropy"])


def test_sent_low_entropy_set_size_and_order():
    d = make(B=6, T=20)
    sel = sent_selection(sent_stats(d), kappa=0.05)
    valid = d["mask"] > 0
    n = int(valid.sum())
    assert int(sel.low.sum()) == max(1, math.floor(0.8 * n))
    assert d["entropy"][sel.low].max() <= d["entropy"][valid & ~sel.low].min()


def test_sent_selection_ignores_A_and_lp_outside_L():
    d = make(B=6, T=20, seed=4)
    sel = sent_selection(sent_stats(d), kappa=0.05)
    outside = (d["mask"] > 0) & ~sel.low
    d2 = dict(d)
    d2["advantages"] = torch.where(outside, d["advantages"] + 100.0, d["advantages"])
    d2["logprobs"] = torch.where(outside, d["logprobs"] - 50.0, d["logprobs"])
    sel2 = sent_selection(sent_stats(d2), kappa=0.05)
    for a, b in ((sel.low, sel2.low), (sel.high_cov, sel2.high_cov), (sel.low_cov, sel2.low_cov)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kappa", [2e-4, 0.05])
def test_sent_exactly_n_tokens_at_2beta_and_n_at_half_beta(kappa):
    d = make(B=6, T=20, drift=0.5)
    beta = 0.1
    _, g1, m = run(d, SENTLoss(beta=beta, kappa=kappa, ref_kl=None))
    _, g0, _ = run(d, SENTLoss(beta=0.0, kappa=kappa, ref_kl=None))
    diff = (g1 - g0) * d["mask"].sum() / torch.sign(d["logprobs"] - d["old_logprobs"])
    diff = torch.where(diff.isnan(), torch.zeros_like(diff), diff)
    n_low = max(1, math.floor(0.8 * float(d["mask"].sum())))
    n = max(1, math.floor(kappa * n_low))
    assert int(torch.isclose(diff, torch.tensor(2 * beta)).sum()) == n
    assert int(torch.isclose(diff, torch.tensor(0.5 * beta)).sum()) == n
    assert int((diff.abs() > 1e-7).sum()) == 2 * n
    sel = sent_selection(sent_stats(d), kappa)
    cov = sel.cov
    hi = torch.isclose(diff, torch.tensor(2 * beta))
    assert cov[hi].min() >= cov[sel.low & ~hi].max()


def test_sent_beta_zero_no_ref_kl_is_token_mean_pg():
    d = make(drift=0.5)
    loss, _, _ = run(d, SENTLoss(beta=0.0, ref_kl=None))
    r = torch.exp(d["logprobs"] - d["old_logprobs"])
    torch.testing.assert_close(loss, token_mean(-d["advantages"] * r, d["mask"]))


def test_sent_default_adds_k3_ref_kl_and_requires_ref_logprobs():
    d = make(drift=0.5)
    with pytest.raises(ValueError, match="ref_logprobs"):
        run(d, SENTLoss(beta=0.0))
    d["ref_logprobs"] = d["old_logprobs"] + 0.2
    loss, _, m = run(d, SENTLoss(beta=0.0))
    r = torch.exp(d["logprobs"] - d["old_logprobs"])
    k3 = kl_estimate(d["logprobs"], d["ref_logprobs"], "k3")
    torch.testing.assert_close(loss, token_mean(-d["advantages"] * r, d["mask"]) + 0.001 * token_mean(k3, d["mask"]))
    assert m["kl"] > 0


def test_sent_v1_averages_over_L_only():
    d = make(drift=0.5)
    beta = 0.1
    loss, _, _ = run(d, SENTLoss(version="v1", beta=beta, ref_kl=None))
    low = sent_selection(sent_stats(d), 2e-4).low.float()
    log_r = d["logprobs"] - d["old_logprobs"]
    per_tok = -d["advantages"] * log_r.exp() + beta * log_r.abs()
    torch.testing.assert_close(loss, (per_tok * low).sum() / low.sum())


# ---------- composition, KL, metrics, config ----------


def test_forking_kl_cov_clip_higher_compose_in_one_pass(monkeypatch):
    calls = []
    real = selectors.centred_cov
    monkeypatch.setattr(selectors, "centred_cov", lambda *a: calls.append(1) or real(*a))
    d = make(drift=0.5)
    d["ref_logprobs"] = d["old_logprobs"]
    cfg = ClipCovLoss(eps_high=0.28, eps_low=0.2, forking=ForkingConfig(), ref_kl=RefKLConfig(coef=0.01, estimator="k1"))
    loss, grad, m = run(d, cfg, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 1 and torch.isfinite(loss)
    for key in ("entropy_mean", "clipfrac_low", "clipfrac_high", "clipfrac_dual", "cov_mean", "cov_max",
                "cov_top0.1pct_mean", "frac_clip_cov_zeroed", "frac_forking_kept", "kl", "ratio_mean", "ratio_max"):
        assert isinstance(m[key], float), key


def test_kl_estimators_and_clamp():
    lp = torch.tensor([0.0, -1.0, -30.0])
    ref = torch.tensor([0.0, -2.0, 0.0])
    torch.testing.assert_close(kl_estimate(lp, ref, "k1"), torch.tensor([0.0, 1.0, -10.0]))
    x = ref - lp
    k3 = kl_estimate(lp, ref, "k3")
    torch.testing.assert_close(k3[:2], (x.exp() - x - 1)[:2])
    assert k3[2] == 10.0 and torch.all(k3 >= 0)


def test_entropy_bonus_needs_graph_and_lowers_loss():
    d = make()
    with pytest.raises(ValueError, match="entropy"):
        run(d, PPOClipLoss(entropy_coef=0.01))
    h = d["entropy"].clone().requires_grad_()
    a, _, _ = run(dict(d, entropy=h), PPOClipLoss(entropy_coef=0.01))
    b, _, _ = run(d, PPOClipLoss())
    torch.testing.assert_close(a, b - 0.01 * token_mean(d["entropy"], d["mask"]))
    assert h.grad is not None and torch.all(h.grad[d["mask"] > 0] < 0)


def test_config_union_defaults_and_validation():
    ta = TypeAdapter(PolicyLossConfig)
    cc = ta.validate_python({"type": "clip_cov"})
    assert (cc.ratio, cc.lb, cc.ub, cc.eps_low, cc.eps_high, cc.min_one) == (2e-4, 1.0, 5.0, 1.0, 1.0, True)
    kc = ta.validate_python({"type": "kl_cov", "forking": {"rho": 0.2}})
    assert (kc.beta, kc.kappa, kc.forking.normalise) == (1.0, 2e-3, "selected")
    s = ta.validate_python({"type": "sent"})
    assert (s.version, s.beta, s.kappa, s.ref_kl.coef, s.ref_kl.estimator) == ("v2", 0.1, 2e-4, 0.001, "k3")
    assert ta.validate_python({"type": "gspo"}).agg == "seq-mean-token-mean"
    p = ta.validate_python({"type": "ppo_clip"})
    assert (p.eps_low, p.eps_high, p.dual_clip, p.entropy_coef, p.ref_kl, p.scope) == (0.2, 0.2, None, 0.0, None, "micro")
    for bad in ({"type": "ppo_clip", "eps_hi": 0.3}, {"type": "nope"}, {"type": "clip_cov", "lb": 5, "ub": 1},
                {"type": "ppo_clip", "agg": "seq-mean-token-sum-norm"}, {"type": "kl_cov", "forking": {"rho": 0}}):
        with pytest.raises(ValidationError):
            ta.validate_python(bad)
    for name in ("ppo_clip", "clip_cov", "kl_cov", "sent", "gspo", "cispo"):
        get_policy_loss(name)


def test_every_field_is_documented():
    from learner import loss_config

    for cls in (PPOClipLoss, ClipCovLoss, KLCovLoss, SENTLoss, GSPOLoss, CISPOLoss, ForkingConfig, RefKLConfig):
        for name, f in cls.model_fields.items():
            assert name == "type" or f.description, f"{cls.__name__}.{name} has no description"
    assert loss_config.__doc__


@pytest.mark.parametrize("cfg", [PPOClipLoss(dual_clip=3.0), ClipCovLoss(), KLCovLoss(), SENTLoss(ref_kl=None), GSPOLoss(), CISPOLoss(),
                                 KLCovLoss(forking=ForkingConfig()), SENTLoss(version="v1", ref_kl=None, forking=ForkingConfig())])
def test_all_padding_micro_batch_gives_zero_loss_with_a_graph(cfg):
    """The learner pads ranks with empty micro-batches so collectives line up; they must be inert."""
    d = make()
    d["mask"] = torch.zeros_like(d["mask"])
    loss, grad, m = run(d, cfg, global_num_tokens=50.0, global_num_seqs=6.0)
    assert loss == 0 and torch.all(grad == 0) and all(math.isfinite(v) for v in m.values())


def test_forking_shards_weight_selected_means_by_token_share():
    d = make(B=6, seed=5)
    cfg = PPOClipLoss(forking=ForkingConfig(rho=0.3))
    n = float(d["mask"].sum())
    total, expected = 0.0, 0.0
    for rows in (slice(0, 2), slice(2, 6)):
        part = {k: v[rows] for k, v in d.items()}
        loss, _, _ = run(part, cfg, global_num_tokens=n)
        local, _, _ = run(part, cfg)
        total += loss
        expected += local * float(part["mask"].sum()) / n
    torch.testing.assert_close(total, expected)
