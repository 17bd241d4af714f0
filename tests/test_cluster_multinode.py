"""Roles on different Ray nodes, on one machine: a head, a rollout node and a learner node carrying the
custom resources cluster_configs/ray-cluster.yaml gives its worker types, running the tiny job through
recipes/gpu_cluster.yaml (sized for CPU). Each actor must sit on its node, weights must cross nodes
(engine log-probs equal the learner's), and a checkpoint written by learner ranks on another node must
reach the run's storage (a non-local filesystem here) and resume from there."""
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import fsspec
import pytest
import torch

from forkrl.orchestrator.config import load_config
from forkrl.orchestrator.trainer import Trainer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def private_ray_tmp(monkeypatch):
    """Ray's temp dir (sessions and the "current cluster" file a Cluster writes) in a directory this
    test owns, never the machine's /tmp/ray; short, because Ray's socket paths live under it."""
    tmp = tempfile.mkdtemp(prefix="frmn", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Workers import the tiny job's reward function (tests/e2e_reward.py) and forkrl from here.
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def _cfg(model: Path, address: str, output: str, steps: int):
    return load_config(ROOT / "recipes" / "gpu_cluster.yaml", [
        f"model.path={model}", f"cluster.address={address}", f"logging.output_dir={output}",
        "logging.run_name=multinode", "logging.progress=false", "logging.plot=false",
        "data.num_train=64", "data.num_eval=4", "eval.every_steps=0",
        f"trainer.steps={steps}", "trainer.prompts_per_step=4",
        "rollout.num_actors=1", "rollout.gpus_per_actor=0", "rollout.cpus_per_actor=1",
        "rollout.samples_per_prompt=8", "rollout.max_new_tokens=12", "rollout.max_model_len=256",
        "rollout.kv_cache_gb=0.25", "rollout.gpu_memory_utilization=0.3",
        "learner.num_ranks=2", "learner.gpus_per_rank=0", "learner.cpus_per_rank=1", "learner.lr=3.0e-3",
        "learner.micro_batch_size=16", "learner.weight_sync.backend=gloo",
        "reward.num_workers=1", "reward.type=function", "reward.function=e2e_reward:digit_share",
        "checkpoint.every_steps=2",
    ])


def _probe(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """(engine log-probs, learner log-probs) of one fixed sequence."""
    from forkrl.orchestrator.batching import pack_batch
    from tiny_model import episode

    seq = [1, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    probe = pack_batch([episode(seq[:3], seq[3:])], pad_id=0, temperature=1.0)
    engine = torch.tensor(trainer.rollout.prompt_logprobs([seq])[0])
    return engine, trainer.learner.compute_logprobs(probe)[0, 1:len(seq)]


def test_roles_on_their_nodes_weights_cross_nodes_and_a_remote_learners_checkpoint_resumes(
        private_ray_tmp, tiny_model_dir):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    rollout_node = cluster.add_node(num_cpus=1, resources={"forkrl_rollout": 1})
    learner_node = cluster.add_node(num_cpus=2, resources={"forkrl_learner": 2})
    output = f"memory://multinode-{uuid.uuid4().hex[:8]}/runs"
    fs, root = fsspec.core.url_to_fs(output + "/multinode")
    trainer = Trainer(_cfg(tiny_model_dir, cluster.address, output, steps=2), output + "/multinode")
    try:
        trainer.run()
        assert trainer.placement == {"driver": cluster.head_node.node_id, "rollout": [rollout_node.node_id],
                                     "learner": [learner_node.node_id] * 2}
        assert trainer.pusher.transport == "collective"  # a gloo broadcast from the learner node
        engine, learner = _probe(trainer)
        assert torch.allclose(engine, learner, atol=1e-4), (engine - learner).abs().max()
        from transformers import AutoModelForCausalLM

        initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
        with torch.no_grad():
            logits = initial(torch.tensor([[1, 5, 6, 7, 8, 9, 10, 11, 12, 13]])).logits[0, :-1]
        before = logits.log_softmax(-1).gather(1, torch.tensor([5, 6, 7, 8, 9, 10, 11, 12, 13])[:, None])[:, 0]
        assert not torch.allclose(engine, before, atol=1e-3), "training did not move the engine's weights"
        trained = trainer.learner.param_stats()
    finally:
        trainer.shutdown()

    # Rank 1's optimizer shard was written on the learner node's disk only; it reached the storage.
    ckpt = f"{root}/checkpoints/step_000002"
    names = {p.rsplit("/", 1)[1] for p in fs.find(ckpt)}
    assert {"state.json", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= names, names
    assert fs.exists(f"{root}/final_model/config.json") and fs.exists(f"{root}/metrics.jsonl")

    shutil.rmtree(trainer.run_dir)  # resume from the storage alone
    resumed = Trainer(_cfg(tiny_model_dir, cluster.address, output, steps=3), output + "/multinode", resume=True)
    try:
        resumed.setup()
        assert resumed.step_idx == 2 and resumed.learner.param_stats() == trained
        engine, learner = _probe(resumed)
        assert torch.allclose(engine, learner, atol=1e-4)
        resumed.run_loop()
        assert resumed.step_idx == 3
    finally:
        resumed.shutdown()
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(resumed.run_dir, ignore_errors=True)  # the local working copy of the remote run
    rows = [line for line in fs.cat(f"{root}/metrics.jsonl").decode().splitlines() if line]
    assert [int(r.split(",")[0].split(":")[1]) for r in rows] == [1, 2, 3]
    assert fs.exists(f"{root}/checkpoints/step_000003/state.json")
