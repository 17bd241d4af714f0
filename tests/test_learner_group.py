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

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
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


# eps=1: Adam's first step is ~lr*g/(|g|+eps), close to linear in g, so the comparison tests the
# gradient itself rather than the sign of near-zero entries (which fp32 reduction order can flip).
CFG = dict(lr=1e-2, eps=1.0, micro_batch_size=2, mini_batches=2)


def test_two_rank_update_equals_one_rank_update(ray_cluster, tiny_model_dir):
    from learner.group import LearnerGroup
    from learner.worker import LearnerWorker

    batch = uneven_batch()
    reference = LearnerWorker(LearnerConfig(**CFG), str(tiny_model_dir))
    before = reference.named_parameters_cpu()
    ref_metrics = reference.train_step(batch)
    expected = reference.named_parameters_cpu()

    group = LearnerGroup(LearnerConfig(num_ranks=2, **CFG), str(tiny_model_dir))
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
    finally:
        group.shutdown()

    for name, p in expected.items():
        delta, delta2 = p - before[name], params[name] - before[name]
        assert delta.abs().max() > 0, name
        torch.testing.assert_close(delta2, delta, rtol=1e-4, atol=1e-7, msg=name)
        assert torch.equal(params[name], params_rank1[name]), name
        assert torch.equal(exported[name], params[name]), name
    for key in ("loss", "grad_norm", "entropy", "pg_loss"):
        assert metrics[key] == pytest.approx(ref_metrics[key], rel=1e-4, abs=1e-6), key
    assert metrics["train_tokens"] == ref_metrics["train_tokens"] == batch.num_tokens
    torch.testing.assert_close(logprobs, reference.compute_logprobs(batch), rtol=1e-4, atol=1e-5)
