"""LearnerWorker without Ray (world size 1): learning direction, loss mask, checkpoint resume;
plus TrainBatch splitting and the LearnerConfig section."""
import math
import os
import pickle

os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed picks its accelerator at import time

import pytest
import torch
from pydantic import ValidationError

from forkrl.learner.config import LearnerConfig
from forkrl.learner.types import TrainBatch

L = 16


def make_batch(num_seqs: int = 4, seed: int = 0, adv: float = 1.0) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 500, (num_seqs, L), generator=g)
    attn = torch.ones(num_seqs, L, dtype=torch.long)
    for i in range(num_seqs):
        attn[i, L - 3 * (i % 3):] = 0  # right padding of 0, 3 or 6
    loss_mask = torch.zeros(num_seqs, L)
    loss_mask[:, 6:] = 1.0
    loss_mask *= attn
    advantages = torch.full((num_seqs, L), adv)
    return TrainBatch(ids, attn, loss_mask, advantages, torch.zeros(num_seqs, L))


def make_worker(model_dir, **overrides):
    from forkrl.learner.worker import LearnerWorker

    cfg = LearnerConfig(**{"lr": 1e-3, "micro_batch_size": 2, **overrides})
    return LearnerWorker(cfg, str(model_dir), seed=0)


def initial_entropy(model_dir, batch: TrainBatch) -> float:
    """Token-mean entropy of softmax(z) over the loss tokens, from a plain forward of the initial model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    with torch.no_grad():
        logits = model(batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    logp = torch.log_softmax(logits.double(), -1)
    ent = -(logp.exp() * logp).sum(-1)
    mask = batch.loss_mask[:, 1:].double()
    return float((ent * mask).sum() / mask.sum())


def seq_logprob(worker, batch) -> torch.Tensor:
    return (worker.compute_logprobs(batch) * batch.loss_mask).sum(dim=1)


# ---- TrainBatch / config (no DeepSpeed) ---------------------------------------------------------
def test_shard_covers_rows_once_balanced_and_pickles():
    batch = make_batch(7)
    shards = batch.shard(2)
    rows = sorted(r for s in shards for r in s.input_ids[:, 0].tolist())
    assert rows == sorted(batch.input_ids[:, 0].tolist())
    assert abs(shards[0].num_tokens - shards[1].num_tokens) <= L
    again = pickle.loads(pickle.dumps(shards[0]))
    assert torch.equal(again.input_ids, shards[0].input_ids)
    assert len(batch.shard(9)) == 9 and batch.shard(9)[-1].num_seqs == 0


def test_shard_with_mini_batches_keeps_global_mini_batches():
    batch = make_batch(8)
    global_parts = batch.split(2)
    for n in (1, 2, 3):
        per_k = [[] for _ in global_parts]
        for shard in batch.shard(n, mini_batches=2):
            for k, part in enumerate(shard.split(2)):
                per_k[k].extend(part.input_ids[:, 0].tolist())
        for k, rows in enumerate(per_k):  # the ranks' k-th slices are exactly the global k-th mini-batch
            assert sorted(rows) == sorted(global_parts[k].input_ids[:, 0].tolist()), (n, k)


def test_micro_batches_trim_padding_and_loss_mask_position_zero():
    batch = make_batch(3)
    mbs = batch.micro_batches(1)
    assert [m.input_ids.shape[1] for m in mbs] == [L, L - 3, L - 6]
    bad = torch.zeros(1, L)
    bad[0, 0] = 1
    with pytest.raises(ValueError, match="position 0"):
        TrainBatch(torch.zeros(1, L, dtype=torch.long), torch.ones(1, L), bad, bad, bad)


def test_config_rejects_unknown_fields_and_resolves_auto():
    with pytest.raises(ValidationError, match="extra"):
        LearnerConfig(num_rank=2)
    cfg = LearnerConfig(loss={"type": "clip_cov"})
    assert cfg.loss.type == "clip_cov"
    assert cfg.resolve_dtype(on_gpu=False) == "float32" and cfg.resolve_dtype(on_gpu=True) == "bfloat16"
    assert cfg.resolve_sync_backend() == "gloo"
    with pytest.raises(ValidationError, match="ref_model"):
        LearnerConfig(loss={"type": "ppo_clip", "ref_kl": {"coef": 0.1}})
    with pytest.raises(ValidationError, match="ref_kl"):
        LearnerConfig(ref_model=True)
    with pytest.raises(ValidationError, match="gpus_per_rank"):
        LearnerConfig(weight_sync={"backend": "nccl"})
    # SENT's penalty='ref_kl' reads reference log-probs: ref_model is needed there, not "for nothing"
    assert LearnerConfig(ref_model=True, loss={"type": "sent", "penalty": "ref_kl", "ref_kl": None}).ref_model


# ---- LearnerWorker --------------------------------------------------------------------------------
def test_positive_advantage_raises_and_negative_lowers_logprob(tiny_model_dir):
    worker = make_worker(tiny_model_dir)
    up, down = make_batch(1, seed=1, adv=1.0), make_batch(1, seed=2, adv=-1.0)
    before_up, before_down = seq_logprob(worker, up), seq_logprob(worker, down)
    metrics = worker.train_step(TrainBatch.cat([up, down]))
    assert seq_logprob(worker, up) > before_up + 1e-3
    assert seq_logprob(worker, down) < before_down - 1e-3
    # on policy (r = 1) the PPO loss is token-mean(-A): +1 and -1 over 10 loss tokens each -> 0
    assert metrics["loss"] == pytest.approx(0.0, abs=1e-6) and metrics["pg_loss"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["entropy"] == pytest.approx(initial_entropy(tiny_model_dir, TrainBatch.cat([up, down])), rel=1e-4)
    assert metrics["grad_norm"] > 0
    assert metrics["train_tokens"] == up.num_tokens + down.num_tokens == 32
    assert metrics["train_seconds"] > 0
    assert metrics["tokens_per_s"] == pytest.approx(32 / metrics["train_seconds"])
    assert metrics["lr"] == pytest.approx(1e-3)


def test_tokens_outside_loss_mask_do_not_change_the_update(tiny_model_dir):
    batch = make_batch(4, seed=3)
    batch.loss_mask[0, -1] = 0.0  # a real but untrained last token
    other = TrainBatch(**{f: (v.clone() if isinstance(v, torch.Tensor) else v)
                          for f, v in vars(batch).items()})
    outside = other.loss_mask == 0
    other.input_ids[outside & (other.attention_mask == 0)] = 7  # padding tokens
    other.input_ids[0, -1] = (other.input_ids[0, -1] + 1) % 500  # the untrained last token
    other.advantages[outside] = 123.0
    other.rollout_logprobs[outside] = -5.0
    results = []
    for b in (batch, other):
        worker = make_worker(tiny_model_dir)
        metrics = worker.train_step(b)
        results.append((metrics["loss"], worker.named_parameters_cpu()))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-6)
    for name, p in results[0][1].items():
        torch.testing.assert_close(p, results[1][1][name], rtol=1e-5, atol=1e-7)


def test_checkpoint_resume_matches_uninterrupted(tiny_model_dir, tmp_path):
    b1, b2 = make_batch(4, seed=4), make_batch(4, seed=5, adv=-0.5)
    kw = dict(warmup_steps=3, loss={"type": "ppo_clip"}, mini_batches=2)
    worker = make_worker(tiny_model_dir, **kw)
    worker.train_step(b1)
    worker.save_checkpoint(str(tmp_path), "step1")
    worker.train_step(b2)
    straight = worker.named_parameters_cpu()

    resumed = make_worker(tiny_model_dir, **kw)
    resumed.load_checkpoint(str(tmp_path), "step1")
    assert resumed.steps == 2
    metrics = resumed.train_step(b2)
    assert metrics["optimizer_steps"] == 4
    for name, p in resumed.named_parameters_cpu().items():
        assert torch.equal(p, straight[name]), name


def test_save_hf_roundtrip(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    worker = make_worker(tiny_model_dir)
    worker.train_step(make_batch(2))
    worker.save_hf(str(tmp_path / "hf"))
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32)
    params = worker.named_parameters_cpu()
    for name, p in loaded.named_parameters():
        assert torch.equal(p.detach(), params[name]), name
    assert (tmp_path / "hf" / "tokenizer.json").exists()


def test_reference_model_kl(tiny_model_dir):
    worker = make_worker(tiny_model_dir, ref_model=True, loss={"type": "ppo_clip", "ref_kl": {"coef": 0.1}})
    first = worker.train_step(make_batch(2, seed=6))
    assert first["kl"] == pytest.approx(0.0, abs=1e-7)  # policy == reference before the first step
    second = worker.train_step(make_batch(2, seed=6))
    assert second["kl"] > 1e-6 and second["kl_ref_k3"] == pytest.approx(second["kl"], rel=1e-4)


# ---- logits only where the loss reads them -------------------------------------------------------
def _full_path(model, ids, attn, temperature):
    """Reference: the HF forward's logits at every position, log_softmax, and H = -sum p log p."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].double() / temperature
    logp = torch.log_softmax(logits, -1)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


def _rows():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 500, (3, 10), generator=g)
    attn = torch.ones(3, 10, dtype=torch.long)
    attn[2, 7:] = 0
    where = torch.zeros(3, 9, dtype=torch.bool)
    where[0, 4:], where[1, 2:6], where[2, 3:6] = True, True, True
    return ids, attn, where


def _grads(model, value):
    model.zero_grad()
    value.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _tiny_gemma2(softcap: float):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                       final_logit_softcapping=softcap, attn_logit_softcapping=None)
    return Gemma2ForCausalLM(cfg)


@pytest.mark.parametrize("arch", ["llama", "gemma2-softcap"])
def test_logits_at_selected_positions_equal_the_full_logits_path(tiny_model_dir, arch):
    """Log-probs, entropies and parameter gradients equal the full path's at the selected positions;
    0 elsewhere. Gemma-2's final-logit softcapping (cap 0.5 binds on these logits) is applied by the
    model after its head, so it acts on the selected rows as on all of them."""
    from transformers import AutoModelForCausalLM

    from forkrl.learner.logprobs import selected_logprobs_and_entropy

    if arch == "llama":
        model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float64)
    else:
        model = _tiny_gemma2(softcap=0.5).double()
    ids, attn, where = _rows()
    c_lp, c_ent = torch.linspace(-1, 1, 27).view(3, 9).double(), torch.linspace(2, 0, 27).view(3, 9).double()
    lp, ent = selected_logprobs_and_entropy(model, model.get_output_embeddings(), ids, attn, where, 0.7,
                                            4, entropy_grad=True)
    got = _grads(model, (lp * c_lp).sum() + (ent * c_ent).sum())
    full_lp, full_ent = _full_path(model, ids, attn, 0.7)
    w = where.double()
    torch.testing.assert_close(lp.detach(), full_lp.detach() * w)
    torch.testing.assert_close(ent.detach(), full_ent.detach() * w)
    want = _grads(model, (full_lp * w * c_lp).sum() + (full_ent * w * c_ent).sum())
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, msg=lambda m, n=name: f"{n}: {m}")


def test_logits_at_no_position_keep_the_head_in_the_graph(tiny_model_dir):
    """A micro-batch without loss tokens still gives every parameter a (zero) gradient: ZeRO reduces
    each parameter in every backward on every rank."""
    from transformers import AutoModelForCausalLM

    from forkrl.learner.logprobs import selected_logprobs_and_entropy

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    ids, attn, where = _rows()
    lp, ent = selected_logprobs_and_entropy(model, model.get_output_embeddings(), ids, attn,
                                            torch.zeros_like(where), 1.0, 4)
    assert not lp.any() and not ent.any()
    grads = _grads(model, lp.sum())
    assert all(g is not None and not g.any() for g in grads.values())


def test_a_model_that_calls_its_head_per_position_is_refused():
    from types import SimpleNamespace

    from forkrl.learner.logprobs import selected_logprobs_and_entropy

    class PerPosition(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.head = torch.nn.Embedding(16, 4), torch.nn.Linear(4, 16)

        def forward(self, input_ids, attention_mask, use_cache):
            h = self.emb(input_ids)
            return SimpleNamespace(logits=torch.stack([self.head(h[:, t]) for t in range(h.shape[1])], 1))

    model = PerPosition()
    ids = torch.randint(0, 16, (2, 5))
    with pytest.raises(RuntimeError, match="one call on"):
        selected_logprobs_and_entropy(model, model.head, ids, torch.ones_like(ids),
                                      torch.ones(2, 4, dtype=torch.bool), 1.0, 4)


# ---- ZeRO buckets, off-policy correction, loss changes between steps ----------------------------
@pytest.mark.parametrize("setting,num_params,expected", [
    ("auto", 134_515_008, 16_814_376),  # SmolLM2-135M: ceil(134515008 / 8)
    ("auto", 8_388_615, 1_048_578),  # ceil(/ 8) = 1048577, odd: DeepSpeed needs an even size
    ("auto", 100_000, 1 << 20),  # floor: a tiny model is not reduced per tensor
    ("auto", 7_000_000_000, 500_000_000),  # never above DeepSpeed's default
    (2_000, 134_515_008, 2_000),
])
def test_zero_buckets_sized_to_the_model(setting, num_params, expected):
    from forkrl.learner.engine_setup import deepspeed_config

    zero = deepspeed_config(LearnerConfig(zero_bucket_size=setting), 1, "float32", num_params)["zero_optimization"]
    assert zero["reduce_bucket_size"] == zero["allgather_bucket_size"] == expected
    with pytest.raises(ValidationError):
        LearnerConfig(zero_bucket_size=3)


def test_rollout_logprobs_reach_the_loss_for_tis(tiny_model_dir):
    """The sampler's log-probs 0.5 below the learner's on every loss token: w = e^0.5 < cap 2 on each,
    k1 KL(mu || pi_old) = mean(lp_mu - lp_old) = -0.5, k3 = mean(e^0.5 - 1 - 0.5)."""
    import math

    worker = make_worker(tiny_model_dir, loss={"type": "ppo_clip", "tis": {"level": "token", "cap": 2.0}})
    batch = make_batch(2, seed=8)
    batch.rollout_logprobs = (worker.compute_logprobs(batch) - 0.5) * batch.loss_mask
    m = worker.train_step(batch)
    assert m["tis_weight_mean"] == pytest.approx(math.exp(0.5), rel=1e-4)
    assert m["tis_frac_truncated"] == 0.0
    assert m["rollout_kl_k1"] == pytest.approx(-0.5, abs=1e-4)
    assert m["rollout_kl_k3"] == pytest.approx(math.exp(0.5) - 1.5, abs=1e-4)
    assert m["ppo_kl"] == pytest.approx(0.0, abs=1e-7)  # one epoch, one mini-batch: old = current


def test_set_loss_takes_effect_at_the_next_step(tiny_model_dir):
    from forkrl.learner.loss_config import PPOClipLoss

    worker = make_worker(tiny_model_dir)  # micro-batches of 2: the bonus is summed over two shares
    assert "entropy_bonus" not in worker.train_step(make_batch(4, seed=9))
    worker.set_loss(PPOClipLoss(entropy_coef=0.01))
    m = worker.train_step(make_batch(4, seed=9))
    assert m["entropy_bonus"] == pytest.approx(0.01 * m["entropy"], rel=1e-4)
    worker.set_loss({"type": "kl_cov", "beta": 0.5})  # the dict form, validated like the config
    assert worker.cfg.loss.type == "kl_cov" and worker.cfg.loss.beta == 0.5
    with pytest.raises(ValueError, match="ref_model"):
        worker.set_loss(PPOClipLoss(ref_kl={"coef": 0.1}))
    with pytest.raises(ValidationError):
        worker.set_loss({"type": "kl_cov", "beta": -1})
    assert worker.cfg.loss.type == "kl_cov"  # a refused config leaves the current one


@pytest.mark.parametrize("autocast, matmul_dtype", [("none", torch.float32), ("bfloat16", torch.bfloat16)])
def test_autocast_runs_the_matmuls_in_bf16_and_keeps_the_weights_fp32(tiny_model_dir, autocast, matmul_dtype):
    w = make_worker(tiny_model_dir, autocast=autocast)
    seen = []
    lin = next(m for m in w.engine.module.modules() if isinstance(m, torch.nn.Linear))
    hook = lin.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    before = {n: p.detach().clone() for n, p in w.engine.module.named_parameters()}
    metrics = w.train_step(make_batch(4))
    hook.remove()
    assert seen and set(seen) == {matmul_dtype}
    assert all(p.dtype == torch.float32 for p in w.engine.module.parameters())
    assert any(not torch.equal(before[n], p) for n, p in w.engine.module.named_parameters())  # it learned
    assert all(math.isfinite(v) for v in metrics.values())


def _plain_entropy_and_logprobs(model_dir, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token entropy and sampled-token log-prob [B, L-1] from a plain forward of a saved model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    with torch.no_grad():
        logits = model(batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    logp = torch.log_softmax(logits.double(), -1)
    ent = -(logp.exp() * logp).sum(-1)
    lp = logp.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return ent, lp


def test_the_mechanism_pass_measures_the_steps_entropy_change_and_cov(tiny_model_dir, tmp_path):
    batch = make_batch(4, seed=3)
    batch.advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])[:, None].expand(4, L).clone()
    worker = make_worker(tiny_model_dir)
    plain = worker.train_step(make_batch(2, seed=9))  # a step without the flag reports no mechanism
    assert not any(k.startswith("mechanism_") for k in plain)
    worker.save_hf(str(tmp_path / "before"))
    m = worker.train_step(batch, measure_mechanism=True)
    worker.save_hf(str(tmp_path / "after"))

    mask = batch.loss_mask[:, 1:].double()
    ent0, lp0 = _plain_entropy_and_logprobs(tmp_path / "before", batch)
    ent1, _ = _plain_entropy_and_logprobs(tmp_path / "after", batch)
    n = mask.sum()
    assert m["mechanism_tokens"] == 31 == float(n)  # 10 + 7 + 4 + 10 loss tokens (make_batch's padding)
    h0, h1 = float((ent0 * mask).sum() / n), float((ent1 * mask).sum() / n)
    assert m["mechanism_entropy_before"] == pytest.approx(h0, rel=1e-4)
    assert m["mechanism_entropy_after"] == pytest.approx(h1, rel=1e-4)
    assert abs(h1 - h0) > 1e-4  # the step moved the policy: 'after' is not a second 'before'
    a = batch.advantages[:, 1:].double()
    lp_mean, a_mean = (lp0 * mask).sum() / n, (a * mask).sum() / n
    cov = float((((lp0 - lp_mean) * (a - a_mean)) * mask).sum() / n)
    assert m["mechanism_cov"] == pytest.approx(cov, rel=1e-3, abs=1e-7)
    assert m["mechanism_signs_agree"] == float((h1 - h0 > 0) == (cov < 0))
