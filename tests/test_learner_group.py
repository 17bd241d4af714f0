"""LearnerGroup on real Ray actors (CPU, gloo): a 2-rank update equals the 1-rank update of the
same batch (proves the loss normalisation), and the object-store weight export."""
import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import pytest
import torch

from learner.config import LearnerConfig
from learner.types import TrainBatch

L = 16


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def uneven_batch(num_seqs: int = 5) -> TrainBatch:
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(3, 500, (num_seqs, L), generator=g)
    attn = torch.ones(num_seqs, L, dtype=torch.long)
    lengths = [16, 9, 12, 7, 14, 10, 16, 8][:num_seqs]
    for i, n in enumerate(lengths):
        attn[i, n:] = 0
    loss_mask = torch.zeros(num_seqs, L)
    loss_mask[:, 4:] = 1.0
    loss_mask *= attn
    adv = torch.linspace(-1.0, 1.5, num_seqs).unsqueeze(1).expand(num_seqs, L).clone()
    return TrainBatch(ids, attn, loss_mask, adv, torch.zeros(num_seqs, L))


# grad_clip=0: clipping would hide a gradient scale error (a mutation dropping the world_size factor
# passed with clipping on). eps=1: Adam's first step is ~lr*g/(|g|+eps), close to linear in g, so the
# comparison tests the gradient itself, not the sign of near-zero entries (reduction order can flip it).
CFG = dict(lr=1e-2, eps=1.0, grad_clip=0.0, micro_batch_size=2, mini_batches=2)


@pytest.mark.parametrize("zero_stage", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_two_rank_update_equals_one_rank_update(ray_cluster, tiny_model_dir, zero_stage):
    from learner.group import LearnerGroup
    from learner.worker import LearnerWorker

    batch = uneven_batch()
    reference = LearnerWorker(LearnerConfig(**CFG), str(tiny_model_dir))
    before = reference.named_parameters_cpu()
    ref_metrics = reference.train_step(batch)
    expected = reference.named_parameters_cpu()

    group = LearnerGroup(LearnerConfig(num_ranks=2, zero_stage=zero_stage, **CFG), str(tiny_model_dir))
    try:
        import ray

        metrics = group.train_step(batch)
        params = ray.get(group.actors[0].named_parameters_cpu.remote())
        params_rank1 = ray.get(group.actors[1].named_parameters_cpu.remote())
        logprobs = group.compute_logprobs(batch)

        export = group.export_weights_refs()
        plan = group.weight_plan()
        assert export["plan"] == plan and export["buckets"] == len(export["refs"]) == len(plan)
        from learner.weight_sync import unpack_bucket

        exported = {n: t for bucket, ref in zip(plan, export["refs"])
                    for n, t in unpack_bucket(ray.get(ref), bucket)}

        # Collective push through the group to a receiver task (rank 1 of the weight group).
        addr, port = group.weight_group_address()
        from learner.weight_sync import receive_push

        receiver = ray.remote(num_cpus=0)(receive_push).remote(addr, port, 1, 2, plan, "gloo", 60)
        ray.get(group.init_weight_group(addr, port, 2), timeout=90)
        pushed = ray.get(group.broadcast_weights(), timeout=90)
        received = ray.get(receiver, timeout=90)
        assert pushed["buckets"] == len(plan) and pushed["bytes"] > 0

        # One sequence for two ranks: rank 1 holds nothing and only runs zero-loss passes.
        single = batch.select([0])
        metrics_single = group.train_step(single)
        params_single = ray.get(group.actors[0].named_parameters_cpu.remote())
    finally:
        group.shutdown()

    # atol 3e-7: a couple of fp32 ulps of parameters of magnitude ~1 (norm weights), where the
    # delta is read back as a difference of rounded parameters.
    for name, p in expected.items():
        delta, delta2 = p - before[name], params[name] - before[name]
        assert delta.abs().max() > 0, name
        torch.testing.assert_close(delta2, delta, rtol=1e-4, atol=3e-7, msg=lambda m, n=name: f"{n}: {m}")
        assert torch.equal(params[name], params_rank1[name]), name
        assert torch.equal(exported[name], params[name]), name
        assert torch.equal(received[name], params[name]), name
    for key in ("loss", "grad_norm", "entropy", "pg_loss"):
        assert metrics[key] == pytest.approx(ref_metrics[key], rel=1e-4, abs=1e-6), key
    assert metrics["train_tokens"] == ref_metrics["train_tokens"] == batch.num_tokens
    torch.testing.assert_close(logprobs, reference.compute_logprobs(batch), rtol=1e-4, atol=1e-5)

    ref_single = reference.train_step(single)
    assert metrics_single["loss"] == pytest.approx(ref_single["loss"], rel=1e-4, abs=1e-6)
    after = reference.named_parameters_cpu()
    for name, p in after.items():
        torch.testing.assert_close(params_single[name] - expected[name], p - expected[name],
                                   rtol=1e-3, atol=3e-7, msg=lambda m, n=name: f"{n}: {m}")
