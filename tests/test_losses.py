"""Policy losses (docs/ALGORITHMS.md §1-§5): every "Testable" bullet of
the spec, on CPU tensors; plus truncated importance sampling and the loss metrics, by hand."""
import math

import pytest
import torch
from pydantic import TypeAdapter, ValidationError

import forkrl.learner.selectors as selectors
from forkrl.learner.aggregation import aggregate
from forkrl.learner.loss_config import (
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
from forkrl.learner.losses import LossInputs, compute_policy_loss, get_policy_loss, kl_estimate
from forkrl.learner.selectors import centred_cov, forking_mask, sent_selection, TokenStats

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


def agg_by_hand(x, m, mode, C=16.0, num_tokens=None, num_seqs=None):
    """docs/ALGORITHMS.md §0 written out row by row, independently of learner.aggregation."""
    rows = [([float(v) for v, k in zip(xr, mr) if k > 0]) for xr, mr in zip(x.tolist(), m.tolist())]
    rows_with_tokens = [r for r in rows if r]
    n_tok = num_tokens if num_tokens is not None else sum(len(r) for r in rows)
    n_seq = num_seqs if num_seqs is not None else len(rows_with_tokens)
    total = sum(sum(r) for r in rows)
    if mode == "token-mean":
        return torch.tensor(total / n_tok)
    if mode == "seq-mean-token-mean":
        return torch.tensor(sum(sum(r) / len(r) for r in rows_with_tokens) / n_seq)
    if mode == "seq-mean-token-sum":
        return torch.tensor(total / n_seq)
    assert mode == "seq-mean-token-sum-norm"
    return torch.tensor(total / C)


# ---------- §5 primitives and §1 base objectives ----------


@pytest.mark.parametrize("mode", AGGS)
@pytest.mark.parametrize(
    "cfg_cls,extra",
    [(PPOClipLoss, {}), (PPOClipLoss, {"eps_high": 0.28}), (KLCovLoss, {}), (GSPOLoss, {}), (ClipCovLoss, {"ratio": 0.0, "min_one": False})],
)
def test_ratio_one_gives_agg_of_minus_A(cfg_cls, extra, mode):
    d = make(on_policy=True)
    loss, _, _ = run(d, cfg_cls(**extra, **agg_kw(mode)))
    expected = agg_by_hand(-d["advantages"], d["mask"], mode, C=16.0)
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
    # and the unsharded loss is the formula itself (a uniform scale error would pass the comparison above)
    r = torch.exp(d["logprobs"] - d["old_logprobs"])
    A, m = d["advantages"], d["mask"]
    pg = torch.maximum(-A * r, -A * r.clamp(0.8, 1.28))
    x = d["ref_logprobs"] - d["logprobs"]
    per_token = pg + 0.01 * (x.exp() - x - 1) - 0.01 * d["entropy"].detach()
    torch.testing.assert_close(full_loss, agg_by_hand(per_token, m, mode, C=16.0))


def test_global_normaliser_equal_to_local_count_changes_nothing_under_forking():
    d = make()
    cfg = PPOClipLoss(forking=ForkingConfig())
    a, ga, _ = run(d, cfg)
    b, gb, _ = run(d, cfg, global_num_tokens=float(d["mask"].sum()), global_num_seqs=float(d["mask"].shape[0]))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


# A known small batch: row 0 has 3 tokens, row 1 one token, row 2 is all padding (carries no sample).
AGG_X = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 9.0, 9.0, 9.0]])
AGG_M = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("mode,local,global_", [
    # local normalisers: 4 tokens, 2 sequences; global: 10 tokens, 4 sequences; C = 8
    ("token-mean", 11 / 4, 11 / 10),  # (1+2+3+5) / tokens
    ("seq-mean-token-mean", (6 / 3 + 5 / 1) / 2, (6 / 3 + 5 / 1) / 4),  # mean over rows of row means
    ("seq-mean-token-sum", (6 + 5) / 2, (6 + 5) / 4),  # mean over rows of row sums
    ("seq-mean-token-sum-norm", 11 / 8, 11 / 8),  # Dr.GRPO: total / C, whatever the counts
])
def test_aggregate_literal_values(mode, local, global_):
    for m in (AGG_M, AGG_M.bool()):
        got = aggregate(AGG_X, m, mode, norm_constant=8.0)
        assert float(got) == pytest.approx(local)
        assert float(got) == pytest.approx(float(agg_by_hand(AGG_X, AGG_M, mode, C=8.0)))
        got = aggregate(AGG_X, m, mode, num_tokens=10.0, num_seqs=4.0, norm_constant=8.0)
        assert float(got) == pytest.approx(global_)


def test_aggregate_rejects_unknown_mode_and_missing_constant():
    with pytest.raises(ValueError, match="norm_constant"):
        aggregate(AGG_X, AGG_M, "seq-mean-token-sum-norm")
    with pytest.raises(ValueError, match="unknown aggregation mode"):
        aggregate(AGG_X, AGG_M, "token-sum")


def ppo_literal_batch():
    """ratios row 0 (A = 1): 1, 1.5, 0.5; row 1 (A = -0.5): 1.1, 0.7, padding. eps 0.2.
    Per-token PPO-clip loss max(-A r, -A clip(r)): row 0: -1, -1.2 (clipped), -0.5; row 1: 0.55, 0.4
    (clipped). Row sums -2.7 and 0.95; 5 tokens."""
    r = torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.7, 1.0]])
    old = torch.full((2, 3), -1.0)
    return dict(logprobs=old + r.log(), old_logprobs=old, advantages=torch.tensor([[1.0] * 3, [-0.5] * 3]),
                mask=torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]), entropy=None)


@pytest.mark.parametrize("mode,expected", [
    ("token-mean", -0.35),  # (-2.7 + 0.95) / 5
    ("seq-mean-token-mean", -0.2125),  # (-2.7 / 3 + 0.95 / 2) / 2
    ("seq-mean-token-sum", -0.875),  # (-2.7 + 0.95) / 2
    ("seq-mean-token-sum-norm", -0.4375),  # (-2.7 + 0.95) / 4
])
def test_ppo_clip_loss_literal_value_per_mode(mode, expected):
    kw = {"agg": mode, "agg_norm_constant": 4.0} if mode.endswith("norm") else {"agg": mode}
    loss, grad, m = run(ppo_literal_batch(), PPOClipLoss(**kw))
    assert float(loss) == pytest.approx(expected)
    assert m["loss"] == pytest.approx(expected) and m["pg_loss"] == pytest.approx(expected)
    assert m["clipfrac_high"] == pytest.approx(0.2) and m["clipfrac_low"] == pytest.approx(0.2)
    if mode == "token-mean":  # d/dlp (-A r) = -A r on unclipped tokens, / 5 tokens
        torch.testing.assert_close(grad, torch.tensor([[-0.2, 0.0, -0.1], [0.11, 0.0, 0.0]]))


@pytest.mark.parametrize("estimator,kl,grad", [
    # lp = (-1, -2), lp_ref = (-1.5, -1), x = lp_ref - lp = (-0.5, 1); token-mean over 2 tokens
    ("k1", -0.25, [0.5, 0.5]),  # lp - lp_ref = (0.5, -1); d/dlp = 1
    ("k3", (math.exp(-0.5) - 0.5 + math.e - 2) / 2,  # exp(x) - x - 1 = (0.1065..., 0.7183...)
     [(1 - math.exp(-0.5)) / 2, (1 - math.e) / 2]),  # d/dlp = 1 - exp(x)
])
def test_ref_kl_estimator_choice_reaches_the_loss(estimator, kl, grad):
    """On policy with A = 0 the loss is coef * agg(KL) alone, so the estimator's value is visible."""
    lp = torch.tensor([[-1.0, -2.0]])
    d = dict(logprobs=lp, old_logprobs=lp.clone(), advantages=torch.zeros(1, 2), mask=torch.ones(1, 2),
             entropy=None, ref_logprobs=torch.tensor([[-1.5, -1.0]]))
    loss, g, m = run(d, PPOClipLoss(ref_kl=RefKLConfig(coef=0.1, estimator=estimator)))
    assert m["kl"] == pytest.approx(kl)
    assert float(loss) == pytest.approx(0.1 * kl)
    torch.testing.assert_close(g, 0.1 * torch.tensor([grad]))


def test_ref_kl_off_when_coef_zero_and_only_k3_clamped_per_token():
    """verl's kl_penalty: 'kl' (k1) is unclamped, 'low_var_kl' (k3) is clamped to ±10 per token."""
    lp = torch.tensor([[-1.0, -30.0]])
    d = dict(logprobs=lp, old_logprobs=lp.clone(), advantages=torch.zeros(1, 2), mask=torch.ones(1, 2),
             entropy=None, ref_logprobs=torch.tensor([[-1.5, 0.0]]))
    loss, _, m = run(d, PPOClipLoss(ref_kl=RefKLConfig(coef=0.0)))
    assert float(loss) == 0.0 and "kl" not in m
    _, _, m = run(d, PPOClipLoss(ref_kl=RefKLConfig(coef=1.0, estimator="k1")))
    assert m["kl"] == pytest.approx((0.5 - 30.0) / 2)  # -30 - 0 = -30: k1 is not clamped
    _, _, m = run(d, PPOClipLoss(ref_kl=RefKLConfig(coef=1.0, estimator="k3")))
    assert m["kl"] == pytest.approx((math.exp(-0.5) - 0.5 + 10.0) / 2)  # exp(30) - 31 clamps to 10


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


def test_sent_overlapping_sets_end_at_half_beta():
    """2n > |L|: the released code writes 2 beta on the top-n, then 0.5 beta on the bottom-n (docs/ALGORITHMS.md §4)."""
    h = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.9]])  # L = the 4 lowest (floor(0.8 * 5)); token 4 is outside
    lp = torch.tensor([[-1.0, -2.0, -3.0, -4.0, -5.0]])
    adv = torch.ones(1, 5)
    adv[0, :2] = -1.0
    stats = TokenStats(torch.ones(1, 5, dtype=torch.bool), lp, lp, adv, h)
    sel = sent_selection(stats, kappa=0.75)  # n = floor(0.75 * 4) = 3 > |L| / 2
    # cov over L: lp mean -2.5, A mean 0 -> (1.5)(-1), (0.5)(-1), (-0.5)(1), (-1.5)(1)
    torch.testing.assert_close(sel.cov, torch.tensor([[-1.5, -0.5, -0.5, -1.5, 0.0]]))
    assert sel.low.tolist() == [[True, True, True, True, False]]
    assert int(sel.low_cov.sum()) == 3 and int(sel.high_cov.sum()) == 1
    assert not bool((sel.high_cov & sel.low_cov).any()) and sel.high_cov[0, 1] | sel.high_cov[0, 2]
    one = TokenStats(torch.tensor([[True, False]]), lp[:, :2], lp[:, :2], adv[:, :2], h[:, :2])
    sel = sent_selection(one, kappa=2e-4)  # |L| = 1, n = 1: the token is in both sets, ends at 0.5 beta
    assert sel.low.tolist() == [[True, False]] and sel.low_cov.tolist() == [[True, False]]
    assert not bool(sel.high_cov.any())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_sent_ref_kl_penalty_uses_k3_to_the_reference(version):
    d = make(B=4, T=10, drift=0.5, seed=2)
    d["ref_logprobs"] = d["old_logprobs"] - 0.3
    beta, kappa = 0.5, 0.2
    loss, _, _ = run(d, SENTLoss(version=version, penalty="ref_kl", beta=beta, kappa=kappa, ref_kl=None))
    sel = sent_selection(sent_stats(d), kappa)
    x = d["ref_logprobs"] - d["logprobs"]
    k3 = x.exp() - x - 1
    pg = -d["advantages"] * torch.exp(d["logprobs"] - d["old_logprobs"])
    if version == "v2":
        w = 2.0 * sel.high_cov.float() + 0.5 * sel.low_cov.float()
        expected = token_mean(pg + beta * w * k3, d["mask"])
    else:
        low = sel.low.float()
        expected = (((pg + beta * k3) * low).sum() / low.sum())
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="ref_logprobs"):
        run(dict(d, ref_logprobs=None), SENTLoss(version=version, penalty="ref_kl", ref_kl=None))


def test_dual_clip_literal_values():
    """Row 0 (A = 0.5, r = 1, 1.1): -0.5, -0.55. Row 1 (A = -1, r = 5, 3): PPO gives 5 and 3, the dual
    clip caps at -A c = 3; only r = 5 is counted as dual-clipped (3 is not above the cap)."""
    r = torch.tensor([[1.0, 1.1], [5.0, 3.0]])
    old = torch.full((2, 2), -2.0)
    d = dict(logprobs=old + r.log(), old_logprobs=old, advantages=torch.tensor([[0.5, 0.5], [-1.0, -1.0]]),
             mask=torch.ones(2, 2), entropy=None)
    loss, grad, m = run(d, PPOClipLoss(dual_clip=3.0))
    assert float(loss) == pytest.approx((-0.5 - 0.55 + 3.0 + 3.0) / 4)
    assert (m["clipfrac_dual"], m["clipfrac_high"], m["clipfrac_low"]) == (0.25, 0.0, 0.0)
    # d/dlp (-A r) = -A r where unclipped, 0 where the dual clip caps (r = 3 sits on the tie: not checked)
    torch.testing.assert_close(grad.flatten()[:3], torch.tensor([-0.5 * 1.0, -0.5 * 1.1, 0.0]) / 4)


def _float32_exact(d: float) -> float:
    """exp(d) as the loss computes it (float32), so a test can put a ratio exactly on a clip bound."""
    return float(torch.exp(torch.tensor(d)))


def test_clip_fraction_metrics_at_the_exact_bound():
    """A ratio exactly on 1 + eps_high (or 1 - eps_low) is not clipped: clamp leaves it unchanged."""
    hi, lo = _float32_exact(0.25), _float32_exact(-0.25)
    old = torch.zeros(1, 4)
    lp = torch.tensor([[0.25, -0.25, 0.5, -0.5]])
    d = dict(logprobs=lp, old_logprobs=old, advantages=torch.ones(1, 4), mask=torch.ones(1, 4), entropy=None)
    _, _, m = run(d, CISPOLoss(eps_low=1.0 - lo, eps_high=hi - 1.0))
    assert (m["clipfrac_high"], m["clipfrac_low"]) == (0.25, 0.25)  # only 0.5 and -0.5 are outside
    _, _, m = run(d, PPOClipLoss(eps_low=1.0 - lo, eps_high=hi - 1.0))
    assert (m["clipfrac_high"], m["clipfrac_low"]) == (0.25, 0.0)  # A > 0: r < 1 - eps is not clipped


def test_gspo_clip_fraction_metrics():
    """Sequence ratios: exp(0.2) and exp(0.5) (above 1 + 4e-4, A > 0: clipped high), exp(-0.2) (below
    1 - 3e-4, A < 0: clipped low), exactly 1 and exp(1e-4) (inside the range: not clipped)."""
    lp = torch.tensor([[0.1, 0.3], [-0.3, -0.1], [0.2, -0.2], [1e-4, 1e-4], [0.4, 0.6]])
    A = torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0])
    d = dict(logprobs=lp, old_logprobs=torch.zeros(5, 2), advantages=A[:, None].expand(5, 2).clone(),
             mask=torch.ones(5, 2), entropy=None)
    loss, _, m = run(d, GSPOLoss())
    assert m["clipfrac_high"] == pytest.approx(4 / 10) and m["clipfrac_low"] == pytest.approx(2 / 10)
    s = torch.exp(torch.tensor([0.2, -0.2, 0.0, 1e-4, 0.5]))
    per_seq = torch.maximum(-A * s, -A * s.clamp(1 - 3e-4, 1 + 4e-4))
    assert float(loss) == pytest.approx(float(per_seq.mean()))


def test_loss_metrics_are_the_values_they_name():
    d = make(B=3, T=6, drift=0.4, seed=7)
    d["ref_logprobs"] = d["old_logprobs"] - 0.2
    cfg = KLCovLoss(kappa=0.2, ref_kl=RefKLConfig(coef=0.1, estimator="k1"))
    loss, _, m = run(d, cfg)
    valid = d["mask"] > 0
    r = torch.exp(d["logprobs"] - d["old_logprobs"])[valid]
    assert m["ratio_mean"] == pytest.approx(float(r.mean())) and m["ratio_max"] == pytest.approx(float(r.max()))
    assert m["entropy_mean"] == pytest.approx(float(d["entropy"][valid].mean()))
    pg = token_mean(-d["advantages"] * torch.exp(d["logprobs"] - d["old_logprobs"]), d["mask"])
    kl = token_mean(d["logprobs"] - d["ref_logprobs"], d["mask"])
    assert m["pg_loss"] == pytest.approx(float(pg), rel=1e-5)
    assert m["kl"] == pytest.approx(float(kl), rel=1e-5)
    assert m["loss"] == pytest.approx(float(loss)) == pytest.approx(m["pg_loss"] + m["penalty"] + 0.1 * m["kl"])
    assert m["penalty"] > 0


def test_cov_metrics_written_out():
    """cov_top0.1pct_mean averages the top ceil(0.001 N) covariances: 3 of N = 2400 here."""
    d = make(B=4, T=600, full=True, seed=9)
    _, _, m = run(d, PPOClipLoss())
    valid = d["mask"] > 0
    lp, A = d["logprobs"][valid].double(), d["advantages"][valid].double()
    cov = (lp - lp.mean()) * (A - A.mean())
    top3 = cov.sort(descending=True).values[:3]
    assert m["cov_mean"] == pytest.approx(float(cov.mean()), abs=1e-6)
    assert m["cov_max"] == pytest.approx(float(cov.max()), rel=1e-5)
    assert m["cov_top0.1pct_mean"] == pytest.approx(float(top3.mean()), rel=1e-5)
    assert top3[0] != top3[2]  # so the count matters
    one = dict(make(B=1, T=3), mask=torch.tensor([[0.0, 1.0, 0.0]]))
    _, _, m = run(one, PPOClipLoss())  # a single valid token: cov 0, still reported
    assert (m["cov_mean"], m["cov_max"], m["cov_top0.1pct_mean"]) == (0.0, 0.0, 0.0)


def test_centred_cov_literal_values():
    lp = torch.tensor([[-1.0, -2.0, -3.0, 9.0]])
    adv = torch.tensor([[1.0, 1.0, -2.0, 7.0]])
    valid = torch.tensor([[True, True, True, False]])
    # over the valid tokens: mean lp -2, mean A 0 -> (1)(1), (0)(1), (-1)(-2); 0 outside
    torch.testing.assert_close(centred_cov(lp, adv, valid), torch.tensor([[1.0, 0.0, 2.0, 0.0]]))


def test_selectors_with_a_single_valid_token_pick_it():
    h = torch.tensor([[0.5, 2.0, 0.1]])
    valid = torch.tensor([[False, True, False]])
    for variant in ("topk", "quantile"):
        assert forking_mask(h, valid, 0.2, variant).tolist() == [[False, True, False]]
    assert selectors.kl_cov_mask(torch.zeros(1, 3), valid, 2e-3).tolist() == [[False, True, False]]
    none = torch.zeros(1, 3, dtype=torch.bool)
    for variant in ("topk", "quantile"):
        assert not forking_mask(h, none, 0.2, variant).any()
    assert not selectors.kl_cov_mask(h, none, 0.5).any()
    with pytest.raises(ValueError, match="forking variant"):
        forking_mask(h, valid, 0.2, "bottom")


def test_topk_mask_with_nothing_to_pick_and_stats_repr():
    score = torch.tensor([[3.0, 1.0, 2.0]])
    none = torch.zeros(1, 3, dtype=torch.bool)
    got = selectors._topk_mask(score, none, 2)
    assert got is not None and got.dtype == torch.bool and not got.any()
    assert selectors._topk_mask(score, ~none, 2, largest=False).tolist() == [[False, True, True]]
    stats = TokenStats(~none, score, score, score)
    assert float(stats.cov.abs().sum()) > 0 and "_cov" not in repr(stats)  # the cached [B, T] cov stays out


def test_clip_cov_bounds_are_strict_and_an_empty_pick_leaves_the_generator_alone():
    cov = torch.tensor([[1.0, 5.0, 3.0, 0.5, 4.0]])
    ok = torch.ones(1, 5, dtype=torch.bool)
    got = selectors.clip_cov_mask(cov, ok, 5, 1.0, 1.0, 5.0)  # cov == lb and cov == ub are not candidates
    assert got.tolist() == [[False, False, True, False, True]]
    assert selectors.clip_cov_mask(cov, ok, 5, 0.0, 1.0, 5.0, min_one=False).sum() == 0
    assert selectors.clip_cov_mask(cov, ok, 5, 0.0, 1.0, 5.0).sum() == 1  # max(1, floor(0))
    wide = torch.arange(40.0).reshape(1, 40) / 10 + 1.05  # 40 candidates in (1, 5)
    g = torch.Generator().manual_seed(5)
    assert selectors.clip_cov_mask(wide, ok.new_ones(1, 40), 40, 0.0, 1.0, 5.0, False, g).sum() == 0
    after_empty = selectors.clip_cov_mask(wide, ok.new_ones(1, 40), 40, 0.1, 1.0, 5.0, True, g)
    fresh = selectors.clip_cov_mask(wide, ok.new_ones(1, 40), 40, 0.1, 1.0, 5.0, True,
                                    torch.Generator().manual_seed(5))
    assert int(fresh.sum()) == 4 and torch.equal(after_empty, fresh)


def test_registries_return_the_function_and_refuse_duplicates():
    from forkrl.learner import losses

    for name in ("ppo_clip", "clip_cov", "kl_cov", "sent", "gspo", "cispo"):
        fn = get_policy_loss(name)
        assert callable(fn) and getattr(losses, fn.__name__) is fn
    with pytest.raises(ValueError, match="twice"):
        losses.register_policy_loss("ppo_clip")(lambda *a: None)
    with pytest.raises(KeyError, match="registered"):
        get_policy_loss("ppo")
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_estimate(torch.zeros(1), torch.zeros(1), "k2")


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
    lp = torch.tensor([0.0, -1.0, -30.0, 15.0, 25.0])
    ref = torch.tensor([0.0, -2.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(kl_estimate(lp, ref, "k1"), torch.tensor([0.0, 1.0, -30.0, 15.0, 25.0]))
    # k3 = exp(x) - x - 1, x = ref - lp = (0, -1, 30, -15, -25); x clamps to -20 before exp, then the
    # result to 10: exp(-1) - (-1) - 1 = exp(-1); x = 30 -> 10; x = -15 -> 14 + exp(-15) -> 10;
    # x = -25 -> -20 -> 19 + exp(-20) -> 10
    k3 = kl_estimate(lp, ref, "k3")
    torch.testing.assert_close(k3, torch.tensor([0.0, math.exp(-1.0), 10.0, 10.0, 10.0]))
    # within the output clamp the input clamp still shows: x = -9 gives exp(-9) + 8 (no clamp binds)
    assert float(kl_estimate(torch.tensor([9.0]), torch.tensor([0.0]), "k3")) == pytest.approx(math.exp(-9.0) + 8.0)
    # x = 100 overflows exp in float32: the clamp of x keeps the gradient 0 instead of 0 * inf = nan
    far = torch.tensor([-100.0], requires_grad=True)
    kl_estimate(far, torch.tensor([0.0]), "k3").sum().backward()
    assert far.grad.tolist() == [0.0]


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
    from forkrl.learner import loss_config

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


# ---------- truncated importance sampling (sampler -> learner), ppo_kl ----------


def tis_batch():
    """On policy (lp = old, r = 1) so the PG term is -A w; old - rollout = (0.5, -1, 0 | 1, -0.8, [6])."""
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -3.0]])
    return dict(logprobs=old.clone(), old_logprobs=old, mask=torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),
                advantages=torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]]), entropy=None,
                rollout_logprobs=torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -0.2, -9.0]]))


E = math.exp
TIS_TABLE = [
    # level, cap, w per token (0 outside the mask), weight mean over 5 tokens, fraction truncated
    ("token", 2.0, [[E(0.5), E(-1), 1.0], [2.0, E(-0.8), 0.0]],  # e^1 = 2.718 > 2: truncated
     (E(0.5) + E(-1) + 1 + 2 + E(-0.8)) / 5, 1 / 5),
    ("token", 1.0, [[1.0, E(-1), 1.0], [1.0, E(-0.8), 0.0]],  # w = 1 = cap exactly is not truncated
     (3 + E(-1) + E(-0.8)) / 5, 2 / 5),
    ("token", 10.0, [[E(0.5), E(-1), 1.0], [E(1), E(-0.8), 0.0]],
     (E(0.5) + E(-1) + 1 + E(1) + E(-0.8)) / 5, 0.0),
    # sequence sums: row 0 0.5 - 1 + 0 = -0.5; row 1 1 - 0.8 = 0.2 (the masked 6 is not counted)
    ("sequence", 2.0, [[E(-0.5)] * 3, [E(0.2), E(0.2), 0.0]], (3 * E(-0.5) + 2 * E(0.2)) / 5, 0.0),
    ("sequence", 1.1, [[E(-0.5)] * 3, [1.1, 1.1, 0.0]], (3 * E(-0.5) + 2 * 1.1) / 5, 2 / 5),
]


@pytest.mark.parametrize("level,cap,w,w_mean,frac", TIS_TABLE)
def test_tis_weights_hand_computed(level, cap, w, w_mean, frac):
    from forkrl.learner.losses import tis_weights

    d = tis_batch()
    got, truncated = tis_weights(d["old_logprobs"], d["rollout_logprobs"], d["mask"] > 0, level, cap)
    torch.testing.assert_close(got, torch.tensor(w))
    assert float(truncated.sum()) / 5 == pytest.approx(frac)
    loss, grad, m = run(d, PPOClipLoss(tis={"level": level, "cap": cap}))
    assert m["tis_weight_mean"] == pytest.approx(w_mean) and m["tis_frac_truncated"] == pytest.approx(frac)
    # r = 1: loss = token-mean(-A w), d loss / d lp = -A r w / 5 (w is a constant of the graph)
    A = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]])
    torch.testing.assert_close(loss, (-A * torch.tensor(w)).sum() / 5)
    torch.testing.assert_close(grad, -A * torch.tensor(w) / 5)


def test_rollout_kl_and_ppo_kl_metrics_hand_computed():
    d = tis_batch()
    d["logprobs"] = d["old_logprobs"] + torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.4, 5.0]])
    _, _, m = run(d, PPOClipLoss())
    assert "tis_weight_mean" not in m  # tis off: no weight, but the mismatch is still reported
    assert m["ppo_kl"] == pytest.approx(-(0.1 - 0.2 + 0.3 + 0.0 + 0.4) / 5)  # mean(old - lp); 5.0 is masked
    # log r = old - rollout = (0.5, -1, 0, 1, -0.8): k1 = mean(-log r); k3 = mean(e^x - 1 - x)
    assert m["rollout_kl_k1"] == pytest.approx(-(0.5 - 1.0 + 0.0 + 1.0 - 0.8) / 5)
    k3 = (E(0.5) - 1.5) + (E(-1) - 1 + 1) + 0.0 + (E(1) - 2) + (E(-0.8) - 1 + 0.8)
    assert m["rollout_kl_k3"] == pytest.approx(k3 / 5)
    _, _, m = run(dict(d, rollout_logprobs=None), PPOClipLoss())
    assert "rollout_kl_k1" not in m and "rollout_kl_k3" not in m


def test_tis_multiplies_the_pg_term_only_and_needs_rollout_logprobs():
    d = make(B=4, T=10, drift=0.3, seed=11)
    g = torch.Generator().manual_seed(1)
    d["rollout_logprobs"] = d["old_logprobs"] + 0.5 * torch.randn(4, 10, generator=g)
    cfg = dict(beta=1.0, kappa=0.2)
    plain, _, m0 = run(d, KLCovLoss(**cfg))
    weighted, _, m1 = run(d, KLCovLoss(**cfg, tis={"level": "token", "cap": 2.0}))
    assert m1["penalty"] == pytest.approx(m0["penalty"])  # the KL-Cov penalty is not weighted
    assert m1["pg_loss"] != pytest.approx(m0["pg_loss"])
    assert float(weighted) == pytest.approx(m1["pg_loss"] + m1["penalty"])
    with pytest.raises(ValueError, match="rollout_logprobs"):
        run(dict(d, rollout_logprobs=None), PPOClipLoss(tis={"level": "token"}))
    with pytest.raises(ValueError, match="TIS level"):
        from forkrl.learner.losses import tis_weights

        tis_weights(d["old_logprobs"], d["rollout_logprobs"], d["mask"] > 0, "batch", 2.0)


def test_tis_sequence_weight_of_a_long_far_off_sequence_is_the_cap_not_inf():
    d = tis_batch()
    d["rollout_logprobs"] = d["old_logprobs"] - 400.0  # sum of log-weights 1200: exp overflows float32
    loss, grad, m = run(d, PPOClipLoss(tis={"level": "sequence", "cap": 3.0}))
    assert m["tis_weight_mean"] == pytest.approx(3.0) and m["tis_frac_truncated"] == 1.0
    assert torch.isfinite(loss) and torch.all(torch.isfinite(grad))


def test_tis_config_defaults_and_validation():
    from forkrl.learner.loss_config import TISConfig

    assert PPOClipLoss().tis is None and SENTLoss().tis is None
    t = PPOClipLoss(tis={}).tis
    assert (t.level, t.cap) == ("token", 2.0)
    assert TISConfig(level="sequence", cap=5).cap == 5.0
    for bad in ({"level": "batch"}, {"cap": 0.0}, {"cap": -1.0}, {"clip": 2.0}):
        with pytest.raises(ValidationError):
            TISConfig(**bad)


@pytest.mark.parametrize("cfg,expected", [
    (PPOClipLoss(), False),
    (PPOClipLoss(ref_kl=RefKLConfig(coef=0.0)), False),  # a zero-weight KL reads nothing
    (PPOClipLoss(ref_kl=RefKLConfig(coef=0.1)), True),
    (SENTLoss(), True),  # SENT's default ref_kl (0.001 k3)
    (SENTLoss(ref_kl=None), False),
    (SENTLoss(ref_kl=None, penalty="ref_kl"), True),  # the paper's penalty KL(pi || pi_ref)
    (SENTLoss(ref_kl=RefKLConfig(coef=0.0), penalty="abs_log_ratio"), False),
])
def test_uses_reference(cfg, expected):
    assert cfg.uses_reference() is expected


def test_needs_entropy_grad_only_for_the_bonus():
    assert not PPOClipLoss().needs_entropy_grad()
    assert not KLCovLoss(forking=ForkingConfig()).needs_entropy_grad()  # selectors only rank by H
    assert PPOClipLoss(entropy_coef=1e-3).needs_entropy_grad()
