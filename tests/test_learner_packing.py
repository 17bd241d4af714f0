"""The packed, prefix-shared forward (learner/packing.py): its plan, its masks, and that it computes
exactly what the padded forward computes (log-probs, entropies, gradients), in the worker too."""
import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed picks its accelerator at import time

import pytest
import torch

from forkrl.learner.packing import (packed_logprobs_and_entropy, packing_supported, plan_packing, prefix_mask,
                             response_mask)


def _two_groups():
    """Rows 0-2 share prompt [5, 6, 7]; row 3 has prompt [5, 6, 8] (same length, other content); row
    4's loss starts at column 1 (empty prefix); row 5 has no loss token. Right-padded to 8."""
    ids = torch.tensor([[5, 6, 7, 20, 21, 22, 0, 0],
                        [5, 6, 7, 30, 31, 0, 0, 0],
                        [5, 6, 7, 40, 41, 42, 43, 0],
                        [5, 6, 8, 50, 51, 0, 0, 0],
                        [9, 60, 61, 0, 0, 0, 0, 0],
                        [5, 6, 7, 70, 0, 0, 0, 0]])
    attn = (torch.arange(8)[None, :] < torch.tensor([6, 5, 7, 5, 3, 4])[:, None]).long()
    loss = torch.zeros(6, 8)
    loss[0, 3:6] = 1
    loss[1, 3:5] = 1
    loss[2, 3:7] = 1
    loss[2, 5] = 0  # a hole: position 4's logits are not wanted, but token 42 is still an input
    loss[3, 3:5] = 1
    loss[4, 1:3] = 1
    return ids, attn, loss[:, 1:] > 0


def test_plan_shares_equal_prefixes_and_drops_padding():
    ids, attn, where = _two_groups()
    plan = plan_packing(ids, attn, where)
    # A prefix is what precedes the first wanted position: the last prompt token goes to the
    # response row (its logits predict the first response token). Rows 0-3 all have prefix [5, 6];
    # row 3's own prompt token 8 is in its response segment. Row 4 has none; row 5 is left out.
    assert plan.prefix_ids.tolist() == [5, 6]
    assert plan.prefix_pos.tolist() == [0, 1]
    assert plan.prefix_seg.tolist() == [0, 0]
    assert plan.resp_ids.tolist() == [7, 20, 21, 7, 30, 7, 40, 41, 42, 8, 50, 9, 60]
    assert plan.resp_pos.tolist() == [2, 3, 4, 2, 3, 2, 3, 4, 5, 2, 3, 0, 1]
    assert plan.resp_row.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4]
    assert plan.resp_col.tolist() == [2, 3, 4, 2, 3, 2, 3, 4, 5, 2, 3, 0, 1]
    assert plan.resp_prefix.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1]
    assert plan.selected.tolist() == [True, True, True, True, True, True, True, False, True, True, True,
                                      True, True]
    assert plan.num_positions == 15  # against 6 x 8 = 48 padded


def test_plan_keeps_prefixes_of_equal_length_and_other_content_apart():
    ids = torch.tensor([[5, 6, 7, 20], [5, 8, 7, 21]])
    where = torch.tensor([[False, False, True], [False, False, True]])
    plan = plan_packing(ids, torch.ones_like(ids), where)
    assert plan.prefix_ids.tolist() == [5, 6, 5, 8]
    assert plan.prefix_seg.tolist() == [0, 0, 1, 1]
    assert plan.resp_prefix.tolist() == [0, 1]


def test_masks():
    ids = torch.tensor([[5, 6, 7, 20, 21], [5, 6, 7, 30, 0], [9, 8, 40, 0, 0]])
    attn = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    where = torch.tensor([[False, True, True, True], [False, True, True, False],
                          [False, True, False, False]])
    plan = plan_packing(ids, attn, where)
    assert plan.prefix_ids.tolist() == [5, 9]  # prefixes [5] (rows 0, 1) and [9] (row 2)
    assert prefix_mask(plan).int().tolist() == [[1, 0], [0, 1]]
    assert plan.resp_ids.tolist() == [6, 7, 20, 6, 7, 8]
    assert plan.bins == (1, 6)
    #                                           prefix | response bin
    assert response_mask(plan).int().tolist() == [[[1, 0, 1, 0, 0, 0, 0, 0],
                                                   [1, 0, 1, 1, 0, 0, 0, 0],
                                                   [1, 0, 1, 1, 1, 0, 0, 0],
                                                   [1, 0, 0, 0, 0, 1, 0, 0],
                                                   [1, 0, 0, 0, 0, 1, 1, 0],
                                                   [0, 1, 0, 0, 0, 0, 0, 1]]]


def test_bins_take_whole_segments_longest_first():
    """Segments of 3, 2 and 1 tokens into bins of 3: [row 0], then [row 1, row 2] (first fit)."""
    ids = torch.tensor([[5, 6, 7, 20, 21], [5, 6, 7, 30, 0], [9, 8, 40, 0, 0]])
    attn = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    where = torch.tensor([[False, True, True, True], [False, True, True, False],
                          [False, True, False, False]])
    plan = plan_packing(ids, attn, where, bin_tokens=3)
    assert plan.resp_row.tolist() == [0, 0, 0, 1, 1, 2]
    assert plan.resp_bin.tolist() == [0, 0, 0, 1, 1, 1]
    assert plan.resp_slot.tolist() == [0, 1, 2, 0, 1, 2]
    assert plan.bins == (2, 3) and plan.num_positions == 2 + 2 * 3
    #                                           prefix | bin
    assert response_mask(plan).int().tolist() == [[[1, 0, 1, 0, 0],
                                                   [1, 0, 1, 1, 0],
                                                   [1, 0, 1, 1, 1]],
                                                  [[1, 0, 1, 0, 0],
                                                   [1, 0, 1, 1, 0],
                                                   [0, 1, 0, 0, 1]]]
    # A segment longer than a bin gets one of its own, as wide as itself.
    wide = plan_packing(ids, attn, where, bin_tokens=1)
    assert wide.resp_bin.tolist() == [0, 0, 0, 1, 1, 2] and wide.bins == (3, 3)
    # Bins of 4: row 0 (3 tokens) opens bin 0, row 1 (2) opens bin 1, row 2 (1) fills bin 0 (first
    # fit). Bin 1's two padding slots see only themselves.
    padded = plan_packing(ids, attn, where, bin_tokens=4)
    assert padded.resp_row.tolist() == [0, 0, 0, 2, 1, 1]
    assert padded.resp_bin.tolist() == [0, 0, 0, 0, 1, 1] and padded.bins == (2, 4)
    assert response_mask(padded)[1].int().tolist() == [[1, 0, 1, 0, 0, 0], [1, 0, 1, 1, 0, 0],
                                                       [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]]


def test_a_wanted_position_on_padding_names_the_row():
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])
    attn = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    where = torch.tensor([[False, True, True], [False, True, True]])
    with pytest.raises(ValueError, match="row 0: a wanted position reads padding"):
        plan_packing(ids, attn, where)


def _grads(model, value):
    model.zero_grad()
    value.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("impl,bin_tokens", [("sdpa", 256), ("eager", 256), ("sdpa", 5)])
def test_packed_equals_padded_logprobs_entropy_and_gradients(tiny_model_dir, impl, bin_tokens):
    from transformers import AutoModelForCausalLM

    from forkrl.learner.logprobs import selected_logprobs_and_entropy

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float64,
                                                 attn_implementation=impl)
    assert model.config._attn_implementation == impl
    ids, attn, where = _two_groups()
    ids = ids + 3 * (ids > 0)  # real tokens away from the specials
    c_lp = torch.linspace(-1, 1, where.numel()).view(where.shape).double()
    c_ent = torch.linspace(2, 0, where.numel()).view(where.shape).double()
    head = model.get_output_embeddings()
    lp, ent = selected_logprobs_and_entropy(model, head, ids, attn, where, 0.7, 4, entropy_grad=True)
    want = _grads(model, (lp * c_lp).sum() + (ent * c_ent).sum())
    p_lp, p_ent = packed_logprobs_and_entropy(model, model, ids, attn, where, 0.7, 4, torch.float64, "cpu",
                                              entropy_grad=True, bin_tokens=bin_tokens)  # 5: several bins
    got = _grads(model, (p_lp * c_lp).sum() + (p_ent * c_ent).sum())
    assert bool((p_lp[~where] == 0).all()) and bool((p_ent[~where] == 0).all())
    assert bool((p_lp[where] != 0).all())
    torch.testing.assert_close(p_lp.detach(), lp.detach())
    torch.testing.assert_close(p_ent.detach(), ent.detach())
    # Equal up to summation order: the shared prefix's gradient is summed over its rows once, in
    # the packed path, instead of per row (measured: ~5e-8 of the largest entry in float64; the
    # rotary tables are float32). A detached prefix cache or a wrong position is off by orders more.
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-6, atol=1e-6 * float(g.abs().max()),
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_nothing_wanted_keeps_the_head_in_the_graph(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    ids, attn, where = _two_groups()
    lp, ent = packed_logprobs_and_entropy(model, model, ids, attn,
                                          torch.zeros_like(where), 1.0, 4, torch.float32, "cpu")
    assert lp.shape == where.shape and not lp.any() and not ent.any()
    grads = _grads(model, lp.sum())
    assert all(g is not None and not g.any() for g in grads.values())


def _grad_ready_order(model, ids, attn, where):
    order: list[str] = []
    handles = [p.register_post_accumulate_grad_hook(lambda p, n=n: order.append(n))
               for n, p in model.named_parameters()]
    try:
        lp, ent = packed_logprobs_and_entropy(model, model, ids, attn, where, 1.0, 4, torch.float32, "cpu",
                                              entropy_grad=True)
        model.zero_grad()
        (lp.sum() + ent.sum()).backward()
    finally:
        for h in handles:
            h.remove()
    return order


def test_gradients_become_ready_in_one_order_whatever_the_micro_batch(tiny_model_dir):
    """ZeRO-2 reduces gradient buckets across ranks slot by slot, filled in the order gradients
    become ready: every rank must produce them in the same order, whether its micro-batch shares a
    prefix, has none (loss from position 1), or wants nothing (a rank's stand-in pass)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    ids, attn, where = _two_groups()
    shared = _grad_ready_order(model, ids, attn, where)
    no_prefix = torch.zeros_like(where)
    no_prefix[:, 0] = True
    assert plan_packing(ids, attn, no_prefix).resp_prefix.tolist() == [-1] * 6
    assert _grad_ready_order(model, ids, attn, no_prefix) == shared
    assert _grad_ready_order(model, ids, attn, torch.zeros_like(where)) == shared
    assert len(shared) == len(list(model.parameters()))


def test_one_token_row_zero_in_a_micro_batch_that_wants_nothing(tiny_model_dir):
    """The stand-in position is row 0's first column even when row 0 is a lone token (a prompt with
    an empty response): it is computed and zeroed, never refused as padding."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    ids, attn = torch.tensor([[7, 0], [5, 6]]), torch.tensor([[1, 0], [1, 1]])
    lp, ent = packed_logprobs_and_entropy(model, model, ids, attn, torch.zeros(2, 1, dtype=torch.bool), 1.0,
                                          4, torch.float32, "cpu")
    assert lp.tolist() == [[0.0], [0.0]] and ent.tolist() == [[0.0], [0.0]]


def test_packing_refused_for_families_it_would_get_wrong():
    """Found by attacking the gate: GPT-Neo's local attention counts row indices (log-probs off by
    0.06 when packed), Bloom's ALiBi reads a 2D mask, hybrid models' linear-attention layers ignore
    the mask; a window nested in a multimodal config's text config counts too."""
    from transformers import BloomConfig, GPTNeoConfig, Qwen2Config

    for cfg in (GPTNeoConfig(), BloomConfig()):
        cfg._attn_implementation = "eager"
        assert f"model_type {cfg.model_type!r} is not among the families" in packing_supported(cfg)
    windowed = Qwen2Config(use_sliding_window=True, sliding_window=64, max_window_layers=0)
    windowed._attn_implementation = "sdpa"
    assert "sliding_window=64" in packing_supported(windowed)


def test_worker_falls_back_when_its_self_check_disagrees(tiny_model_dir, monkeypatch):
    """A model that passes the config gate but whose packed log-probs differ from the padded ones
    on the start-up check trains padded."""
    import forkrl.learner.logprobs as logprobs_module
    from forkrl.learner.config import LearnerConfig
    from forkrl.learner.worker import LearnerWorker

    real = logprobs_module.packed_logprobs_and_entropy
    monkeypatch.setattr(logprobs_module, "packed_logprobs_and_entropy",
                        lambda *a, **k: tuple(t + 0.01 for t in real(*a, **k)))
    worker = LearnerWorker(LearnerConfig(), str(tiny_model_dir), seed=0)
    assert worker.packing is False


def test_packing_refused_where_a_4d_mask_would_be_wrong():
    from transformers import LlamaConfig, MistralConfig

    llama = LlamaConfig()
    llama._attn_implementation = "sdpa"
    assert packing_supported(llama) == ""
    llama._attn_implementation = "flash_attention_2"
    assert "does not take a custom 4D mask" in packing_supported(llama)
    mistral = MistralConfig(sliding_window=4096)
    mistral._attn_implementation = "sdpa"
    assert "sliding_window=4096" in packing_supported(mistral)
    for kind, ok in (("dynamic", False), ("longrope", False), ("linear", True), ("llama3", True)):
        extra = {"original_max_position_embeddings": 64, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "short_factor": [1.0] * 32, "long_factor": [1.0] * 32}
        scaled = LlamaConfig(rope_scaling={"rope_type": kind, "factor": 2.0, **extra})
        scaled._attn_implementation = "sdpa"
        assert (packing_supported(scaled) == "") is ok, (kind, packing_supported(scaled))


def test_worker_step_packed_equals_padded(tiny_model_dir):
    """One optimizer step of the learner on a batch with shared prompts: the packed worker's
    parameters and metrics match the padded worker's."""
    from forkrl.learner.config import LearnerConfig
    from forkrl.learner.types import TrainBatch
    from forkrl.learner.worker import LearnerWorker

    ids, attn, where = _two_groups()
    ids = ids + 3 * (ids > 0)
    loss = torch.nn.functional.pad(where.float(), (1, 0))
    adv = torch.tensor([1.0, -1.0, 0.5, 2.0, -0.5, 1.0])[:, None].expand(6, 8).contiguous()
    batch = TrainBatch(ids, attn, loss, adv, torch.zeros(6, 8))
    runs = {}
    for packing in (False, True):
        cfg = LearnerConfig(lr=1e-3, micro_batch_size=4, packing=packing)
        worker = LearnerWorker(cfg, str(tiny_model_dir), seed=0)
        assert worker.packing is packing
        metrics = worker.train_step(batch)
        runs[packing] = (metrics, worker.named_parameters_cpu())
    (m0, p0), (m1, p1) = runs[False], runs[True]
    for key in ("loss", "entropy", "grad_norm"):
        assert m1[key] == pytest.approx(m0[key], rel=1e-4), key
    assert m0["grad_norm"] > 1e-3
    # Adam's first step moves each parameter by ~lr * g / (|g| + eps): where |g| is near eps, fp32
    # summation order can flip a sign (measured: one entry of 32768 off by 3e-4), so the parameters
    # are compared on average; a real difference in the update moves most entries by ~lr = 1e-3.
    for name, value in p0.items():
        assert float((p1[name] - value).abs().mean()) < 1e-6, name


def test_worker_falls_back_when_checkpointing(tiny_model_dir):
    from forkrl.learner.config import LearnerConfig
    from forkrl.learner.worker import LearnerWorker

    worker = LearnerWorker(LearnerConfig(gradient_checkpointing=True), str(tiny_model_dir), seed=0)
    assert worker.packing is False
