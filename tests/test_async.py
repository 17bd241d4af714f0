"""Async mode on the tiny model with real roles (Ray, vLLM, DeepSpeed, the verifier pool):

- staleness never exceeds trainer.max_staleness and every step trains its full batch;
- a rollout actor killed mid-run is restarted, gets the current weights, and the buffer refills;
- a checkpoint taken in async mode resumes at the same step and data position (the requests that were
  in flight are drawn and generated again: the resumed run trains the same prompts);
- the layouts apply the thread counts they promise.
"""
import os
import shutil
from pathlib import Path

import pytest
import torch

from forkrl.orchestrator.config import load_config
from forkrl.orchestrator.metrics import read_metrics
from forkrl.orchestrator.trainer import Trainer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STEPS = 5


def _cfg(model, *extra):
    return load_config(None, [
        f"model.path={model}", "data.type=arithmetic", "data.num_train=64", "data.num_eval=4",
        "eval.every_steps=0", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=8",
        "rollout.max_model_len=256", "rollout.kv_cache_gb=0.25", "reward.num_workers=1", "reward.type=function",
        "reward.function=e2e_reward:digit_share", "learner.micro_batch_size=16", "learner.lr=3.0e-3",
        f"trainer.steps={STEPS}", "trainer.prompts_per_step=2", "checkpoint.every_steps=2",
        "checkpoint.save_hf_at_end=false", "checkpoint.keep_last=3", "cluster.dashboard=false",
        "cluster.num_cpus=4",
        "logging.progress=false", "logging.plot=false", "logging.ray_metrics=false", *extra])


@pytest.fixture(scope="module")
def ray_session(tiny_model_dir):
    import ray

    os.environ["PYTHONPATH"] = str(ROOT / "tests")  # Ray workers import the test reward functions
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             namespace="forkrl", runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()


def _record_prompts(trainer: Trainer, log: dict, on_train=None):
    """Wrap the train phase: log[step] = the prompt ids it trains on; `on_train(step)` runs first."""
    orig = trainer.train

    def train(groups):
        step = trainer.step_idx + 1
        if on_train is not None:
            on_train(step)
        log[step] = sorted(g[0].prompt_id for g in groups)
        return orig(groups)

    trainer.train = train


def _engine_matches_learner(trainer: Trainer) -> float:
    from forkrl.orchestrator.batching import pack_batch
    from tiny_model import episode

    seq = [1, 5, 6, 7, 8, 9, 10, 11, 12]
    engine = torch.tensor(trainer.rollout.prompt_logprobs([seq])[0])
    learner = trainer.learner.compute_logprobs(pack_batch([episode(seq[:2], seq[2:])], 0, 1.0))[0, 1:len(seq)]
    return float((engine - learner).abs().max())


def test_async_run_survives_a_killed_rollout_actor_and_resumes_exactly(ray_session, tiny_model_dir, tmp_path):
    import ray

    straight: dict[int, list[str]] = {}
    killed = []
    trainer = Trainer(_cfg(tiny_model_dir, "trainer.mode=async", "trainer.max_staleness=1"), tmp_path / "a")

    def kill_rollout_during_step_4(step):
        if step == 4 and not killed:
            killed.append(trainer.rollout.actors[0])
            ray.kill(trainer.rollout.actors[0], no_restart=False)  # Ray restarts it (max_restarts=1)

    _record_prompts(trainer, straight, kill_rollout_during_step_4)
    try:
        summary = trainer.run()
        assert summary["steps"] == STEPS and summary["stopped"] is None and killed
        assert trainer.layout.name == "split" and trainer.rollout.threads() == [1]
        assert trainer.rollout.weight_versions() == [STEPS]  # the restarted engine caught up
        assert _engine_matches_learner(trainer) < 2e-3
    finally:
        trainer.shutdown()
    rows = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if "reward/mean" in r]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert [r["step/weight_version"] for r in rows] == [float(s) for s in range(1, STEPS + 1)]
    assert [r["step/groups_trained"] for r in rows] == [2.0] * STEPS
    assert all(r["staleness/max"] <= 1 and r["staleness/dropped_groups"] == 0 for r in rows)
    assert [r["staleness/max"] for r in rows[:2]] == [0.0, 1.0]  # the overlap really happened
    assert all(r["buffer/depth"] == 1.0 for r in rows)
    # every step trained 2 distinct prompts, and the data stream moved on each step (64 rows, 2 per step)
    assert all(len(set(p)) == 2 for p in straight.values())
    assert len({pid for p in straight.values() for pid in p}) == 2 * STEPS

    # Resume from the step-2 checkpoint: the request in flight then (step 3's) is drawn again.
    resumed_dir = tmp_path / "b"
    shutil.copytree(tmp_path / "a", resumed_dir)
    for ck in (resumed_dir / "checkpoints").iterdir():
        if ck.name != "step_000002":
            shutil.rmtree(ck)
    resumed: dict[int, list[str]] = {}
    trainer = Trainer(_cfg(tiny_model_dir, "trainer.mode=async", "trainer.max_staleness=1"), resumed_dir,
                      resume=True)
    _record_prompts(trainer, resumed)
    try:
        summary = trainer.run()
    finally:
        trainer.shutdown()
    assert summary["steps"] == STEPS
    assert sorted(resumed) == [3, 4, 5]
    assert {s: straight[s] for s in (3, 4, 5)} == resumed


def test_colocated_layout_gives_each_role_every_core(ray_session, tiny_model_dir, tmp_path):
    trainer = Trainer(_cfg(tiny_model_dir, "trainer.mode=sync", "trainer.steps=1"), tmp_path / "c")
    try:
        trainer.setup()
        assert trainer.layout.name == "colocated"
        cores = os.cpu_count()
        assert trainer.rollout.threads() == [cores] and trainer.learner.threads() == [cores]
    finally:
        trainer.shutdown()
