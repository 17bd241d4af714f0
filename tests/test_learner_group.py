"""LearnerGroup on real Ray actors (CPU, gloo): a 2-rank update equals the 1-rank update of the
same batch (proves the loss normalisation), and the object-store weight export."""
import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import pytest
import torch

from forkrl.learner.config import LearnerConfig
from forkrl.learner.types import TrainBatch

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
    from forkrl.learner.group import LearnerGroup
    from forkrl.learner.worker import LearnerWorker

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
        from forkrl.common.weights import CollectiveReceiver, unpack_flats

        exported = dict(unpack_flats(plan, ray.get(export["refs"])))

        # Collective push through the group to a receiver task (rank 1 of the weight group).
        def receive_one_push(addr, port, plan):
            receiver = CollectiveReceiver(addr, port, 1, 2, "gloo", timeout_s=60)
            return {name: t.clone() for name, t in receiver.receive(plan)}

        addr, port = group.weight_group_address()
        receiver = ray.remote(num_cpus=0)(receive_one_push).remote(addr, port, plan)
        ray.get(group.init_weight_group(addr, port, 2), timeout=90)
        pushed = ray.get(group.broadcast_weights(), timeout=90)  # one result per rank
        received = ray.get(receiver, timeout=90)
        assert pushed[0]["buckets"] == len(plan) and pushed[0]["bytes"] > 0
        assert pushed[1] == {"bytes": 0, "seconds": 0.0, "buckets": 0}

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


def test_broadcast_weights_returns_every_ranks_result_so_a_dead_rank_surfaces(ray_cluster, tiny_model_dir):
    import ray

    from forkrl.learner.group import LearnerGroup

    group = LearnerGroup(LearnerConfig(num_ranks=2), str(tiny_model_dir))
    try:
        addr, port = group.weight_group_address()
        ray.get(group.init_weight_group(addr, port, 1), timeout=90)  # rank 0 alone: no receivers
        ray.kill(group.actors[1])  # under ZeRO-2 rank 0's push does not need rank 1
        refs = group.broadcast_weights()
        assert len(refs) == 2
        assert ray.get(refs[0], timeout=90)["buckets"] == len(group.weight_plan())
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(refs, timeout=90)  # what WeightPusher does: rank 1's death is not lost
    finally:
        group.shutdown()
