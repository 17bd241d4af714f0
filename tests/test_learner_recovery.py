"""A learner rank killed mid-step (after generate/verify, as the train phase starts): the orchestrator
restarts the learner group, loads the last checkpoint, re-syncs the engines and still ends with the
configured number of steps, counting the restart in `fault/learner_restarts`."""
from pathlib import Path

import pytest

from forkrl.orchestrator.config import load_config
from forkrl.orchestrator.metrics import read_metrics
from forkrl.orchestrator.trainer import Trainer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_killed_learner_rank_is_restarted_from_the_last_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    import ray

    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # Ray workers
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "data.type=arithmetic", "data.num_train=64", "data.num_eval=4",
        "eval.every_steps=0",
        "rollout.samples_per_prompt=4", "rollout.max_new_tokens=8", "rollout.max_model_len=256",
        "rollout.kv_cache_gb=0.25", "reward.num_workers=1", "reward.type=function",
        "reward.function=e2e_reward:digit_share", "learner.num_ranks=2", "learner.micro_batch_size=16",
        "learner.lr=3.0e-3", "trainer.steps=3", "trainer.prompts_per_step=2", "checkpoint.every_steps=1",
        "checkpoint.save_hf_at_end=false", "cluster.dashboard=false", "cluster.num_cpus=4",
        "logging.progress=false", "logging.plot=false", "logging.ray_metrics=false"])
    trainer = Trainer(cfg, tmp_path / "run")
    train_phase = trainer.train
    killed = []

    def kill_rank_1_during_step_3(groups):
        if trainer.step_idx == 2 and not killed:
            killed.append(trainer.learner.actors[1])
            ray.kill(trainer.learner.actors[1])
        return train_phase(groups)

    trainer.train = kill_rank_1_during_step_3
    try:
        summary = trainer.run()
        assert killed and trainer.learner.actors[1] is not killed[0]
        assert summary["steps"] == 3 and summary["stopped"] is None
        assert trainer.recovery.learner_restarts == 1
        assert trainer.pusher.transport == "collective"  # the engines joined the new rank 0's group
    finally:
        trainer.shutdown()
        ray.shutdown()
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")  # the redone step 3 replaces nothing: it never logged
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["fault/learner_restarts"] for r in rows] == [0, 0, 1]
    assert rows[2]["step/weight_version"] == 3
    # The engines sampled step 3 with the restored learner's weights (version 2 from the checkpoint).
    assert rows[2]["train/rollout_logprob_abs_diff"] < 1e-4
