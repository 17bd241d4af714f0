"""LearnerGroup on real Ray actors (CPU, gloo): a 2-rank update equals the 1-rank update of the
same batch (proves the loss normalisation), the weight push's learner end over both transports, and
checkpoints and the HF export fanned out to every rank, each into its own directory."""
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

        from forkrl.common.transport_collective import Collective, CollectiveReceiver
        from forkrl.common.transport_object_store import ObjectStore
        from forkrl.common.weights import unpack_flats

        ray.get(group.open_weight_sender(ObjectStore()), timeout=90)
        export = ray.get(group.send_weights("object_store"), timeout=90)  # one result per rank
        plan = group.weight_plan()
        assert export[0]["buckets"] == len(export[0]["payload"]) == len(plan)
        assert export[1] == {"payload": [], "bytes": 0, "seconds": 0.0, "buckets": 0}
        exported = dict(unpack_flats(plan, ray.get(export[0]["payload"])))

        # Collective push through the group to a receiver task (rank 1 of the weight group).
        def receive_one_push(addr, port, plan):
            receiver = CollectiveReceiver(addr, port, 1, 2, "gloo", timeout_s=60)
            return {name: t.clone() for name, t in receiver.receive(plan)}

        addr, port = group.sender_address()
        receiver = ray.remote(num_cpus=0)(receive_one_push).remote(addr, port, plan)
        ray.get(group.open_weight_sender(Collective(addr, port, 2, "gloo", 60)), timeout=90)
        pushed = ray.get(group.send_weights("collective"), timeout=90)  # one result per rank
        received = ray.get(receiver, timeout=90)
        assert pushed[0]["buckets"] == len(plan) and pushed[0]["bytes"] == export[0]["bytes"] > 0
        assert pushed[0]["payload"] == [] and pushed[1] == {"payload": [], "bytes": 0, "seconds": 0.0,
                                                            "buckets": 0}

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


def test_send_weights_returns_every_ranks_result_so_a_dead_rank_surfaces(ray_cluster, tiny_model_dir):
    import ray

    from forkrl.common.transport_collective import Collective
    from forkrl.learner.group import LearnerGroup

    group = LearnerGroup(LearnerConfig(num_ranks=2), str(tiny_model_dir))
    try:
        addr, port = group.sender_address()
        link = Collective(addr, port, 1, "gloo", 60)  # rank 0 alone: no receivers
        ray.get(group.open_weight_sender(link), timeout=90)
        ray.kill(group.actors[1])  # under ZeRO-2 rank 0's push does not need rank 1
        refs = group.send_weights("collective")
        assert len(refs) == 2
        assert ray.get(refs[0], timeout=90)["buckets"] == len(group.weight_plan())
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(refs, timeout=90)  # what WeightPusher does: rank 1's death is not lost
    finally:
        group.shutdown()


def test_one_directory_for_all_ranks_or_one_per_rank():
    from forkrl.learner.group import rank_dirs

    assert rank_dirs("/ck/step_1", 3) == ["/ck/step_1"] * 3
    assert rank_dirs(["/a", "/b"], 2) == ["/a", "/b"]
    with pytest.raises(ValueError, match="3 checkpoint directories for 2 learner ranks"):
        rank_dirs(["/a", "/b", "/c"], 2)


@pytest.mark.slow
def test_checkpoints_and_the_hf_export_reach_every_rank_in_its_own_directory(ray_cluster, tiny_model_dir,
                                                                             tmp_path):
    """Each rank saves into the directory it is handed (the orchestrator's staging dirs on other
    nodes), a load from the merged files resumes exactly (parameters, optimizer, step count), and
    the HF export is written by rank 0 alone."""
    import shutil

    import ray

    from forkrl.learner.group import LearnerGroup

    batch = uneven_batch()
    group = LearnerGroup(LearnerConfig(num_ranks=2, **CFG), str(tiny_model_dir))
    try:
        group.train_step(batch)
        dirs = [tmp_path / "rank0", tmp_path / "rank1"]
        group.save_checkpoint([str(d) for d in dirs], "step1")
        saved = ray.get(group.actors[0].named_parameters_cpu.remote())
        straight = group.train_step(batch)
        after_straight = ray.get(group.actors[0].named_parameters_cpu.remote())

        files = [sorted(p.name for p in d.rglob("*") if p.is_file()) for d in dirs]
        assert "zero_pp_rank_0_mp_rank_00_optim_states.pt" in files[0], files
        assert "zero_pp_rank_1_mp_rank_00_optim_states.pt" in files[1], files
        assert not any("zero_pp_rank_1" in f for f in files[0]), files
        assert not any("zero_pp_rank_0" in f for f in files[1]), files
        # The model states come from data-parallel rank 0 only (ZeRO-2 keeps full weights everywhere).
        assert "mp_rank_00_model_states.pt" in files[0] and "mp_rank_00_model_states.pt" not in files[1]

        merged = tmp_path / "merged"  # what the relay gives every rank to load: the whole checkpoint
        for d in dirs:
            shutil.copytree(d, merged, dirs_exist_ok=True)
        group.load_checkpoint(str(merged), "step1")
        loaded = ray.get(group.actors[1].named_parameters_cpu.remote())
        resumed = group.train_step(batch)
        after_resumed = ray.get(group.actors[0].named_parameters_cpu.remote())

        group.save_hf([str(tmp_path / "hf0"), str(tmp_path / "hf1")])
    finally:
        group.shutdown()
    for name, p in saved.items():
        assert torch.equal(loaded[name], p), name
        torch.testing.assert_close(after_resumed[name], after_straight[name], rtol=0, atol=1e-7)
    assert resumed["optimizer_steps"] == straight["optimizer_steps"] == 4.0  # 2 steps x 2 mini-batches
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-6)
    assert (tmp_path / "hf0" / "config.json").is_file() and (tmp_path / "hf0" / "model.safetensors").is_file()
    assert not (tmp_path / "hf1").exists() or not any((tmp_path / "hf1").iterdir())
