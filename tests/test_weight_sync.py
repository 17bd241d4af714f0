"""After a push the engine scores a fixed sequence exactly like the learner (float32 tolerance),
through both transports, and the push is timed, sized and versioned by the pusher alone."""
import time

import pytest
import ray
import torch

from forkrl.actors.config import RolloutConfig
from forkrl.actors.rollout import RolloutGroup
from forkrl.learner.config import LearnerConfig
from forkrl.learner.group import LearnerGroup
from forkrl.orchestrator.batching import pack_batch
from tiny_model import episode
from forkrl.orchestrator.weights import WeightPusher

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("transport", ["collective", "object_store"])
def test_pushed_weights_match_learner_logprobs(ray_local, tiny_model_dir, transport):
    lcfg = LearnerConfig(lr=5e-3, micro_batch_size=8, weight_sync={"transport": transport})
    rcfg = RolloutConfig(samples_per_prompt=4, max_new_tokens=8, max_model_len=128, kv_cache_gb=0.1)
    learner = LearnerGroup(lcfg, str(tiny_model_dir), seed=0)
    rollout = RolloutGroup(rcfg, str(tiny_model_dir))
    try:
        pusher = WeightPusher(learner, rollout, lcfg.weight_sync, "gloo")
        assert pusher.transport == transport
        seq = [1, 5, 6, 7, 8, 9, 10, 11, 12, 13]
        probe = pack_batch([episode(seq[:3], seq[3:])], pad_id=0, temperature=1.0)
        before = rollout.prompt_logprobs([seq])[0]

        episodes = rollout.generate([[1, 5, 6], [1, 9]], seed=0).episodes
        for i, ep in enumerate(episodes):
            ep.advantage = 1.0 if i % 2 else -1.0
        learner.train_step(pack_batch(episodes, pad_id=0, temperature=1.0))
        in_flight = rollout.actors[0].generate.remote([[1, 5, 6]], 1)  # submitted before the push
        pending = pusher.push(wait=False)
        assert pusher.version == 1
        # The engine loads after its in-flight generate, which stays tagged with the old version.
        assert {ep.weight_version for ep in ray.get(in_flight).episodes} == {0}
        stats = pending.wait()
        assert pending.done()
        assert stats["sync/version"] == 1.0 and stats["sync/bytes"] > 0 and stats["sync/seconds"] > 0
        assert rollout.weight_versions() == [1]

        after = torch.tensor(rollout.prompt_logprobs([seq])[0])
        want = learner.compute_logprobs(probe)[0, 1:len(seq)]
        assert not torch.allclose(after, torch.tensor(before), atol=1e-3), "training did not move the weights"
        assert torch.allclose(after, want, atol=1e-4), (after - want).abs().max()

        # After a checkpoint load the run continues at the checkpoint's version.
        assert pusher.restore(5)["sync/version"] == 5.0
        assert pusher.version == 5 and rollout.weight_versions() == [5]
    finally:
        rollout.shutdown()
        learner.shutdown()


def test_a_bf16_wire_halves_the_push_and_the_engine_loads_it(ray_local, tiny_model_dir):
    """weight_sync.wire_dtype=bfloat16 from an fp32 learner: half the bytes of the fp32 push, and the
    (fp32) engine then scores like the learner up to bf16 rounding of the weights."""
    rcfg = RolloutConfig(samples_per_prompt=4, max_new_tokens=8, max_model_len=128, kv_cache_gb=0.1)
    seq = [1, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    probe = pack_batch([episode(seq[:3], seq[3:])], pad_id=0, temperature=1.0)
    sent = {}
    for wire in ("float32", "bfloat16"):
        lcfg = LearnerConfig(lr=5e-3, micro_batch_size=8, weight_sync={"wire_dtype": wire})
        learner = LearnerGroup(lcfg, str(tiny_model_dir), seed=0)
        rollout = RolloutGroup(rcfg, str(tiny_model_dir))
        try:
            pusher = WeightPusher(learner, rollout, lcfg.weight_sync, "gloo")
            assert {dt for b in pusher.plan for _, dt, _ in b} == {wire}
            episodes = rollout.generate([[1, 5, 6], [1, 9]], seed=0).episodes
            for i, ep in enumerate(episodes):
                ep.advantage = 1.0 if i % 2 else -1.0
            learner.train_step(pack_batch(episodes, pad_id=0, temperature=1.0))
            sent[wire] = pusher.push()["sync/bytes"]
            after = torch.tensor(rollout.prompt_logprobs([seq])[0])
            want = learner.compute_logprobs(probe)[0, 1:len(seq)]
            gap = float((after - want).abs().max())
            assert gap < (1e-4 if wire == "float32" else 5e-2), (wire, gap)
        finally:
            rollout.shutdown()
            learner.shutdown()
    assert sent["bfloat16"] * 2 == sent["float32"]


def _wait_until_restarted(rollout, timeout_s=180.0):
    """Poll until the killed actor answers as a fresh engine (weight version 0, the initial weights)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if rollout.weight_versions() == [0]:
                return
        except ray.exceptions.RayActorError:  # between the kill and the restart
            pass
        time.sleep(0.2)
    raise AssertionError(f"rollout actor not restarted within {timeout_s}s")


def test_dead_rollout_actor_is_restarted_and_brought_to_the_current_weights(ray_local, tiny_model_dir):
    lcfg = LearnerConfig(lr=5e-3, micro_batch_size=8)
    rcfg = RolloutConfig(samples_per_prompt=2, max_new_tokens=6, max_model_len=128, kv_cache_gb=0.1)
    learner = LearnerGroup(lcfg, str(tiny_model_dir), seed=0)
    rollout = RolloutGroup(rcfg, str(tiny_model_dir))
    try:
        pusher = WeightPusher(learner, rollout, lcfg.weight_sync, "gloo")
        episodes = rollout.generate([[1, 5, 6]], seed=0).episodes
        for i, ep in enumerate(episodes):
            ep.advantage = 1.0 - 2 * i
        learner.train_step(pack_batch(episodes, pad_id=0, temperature=1.0))
        assert pusher.push()["sync/version"] == 1.0
        ray.kill(rollout.actors[0], no_restart=False)  # Ray restarts it with the initial weights
        _wait_until_restarted(rollout)  # ray.kill is asynchronous: a push could still reach the old actor
        pending = pusher.push(wait=False)  # the broadcast fails: wait() re-sends via the object store
        stats = pending.wait()
        assert pusher.transport == "object_store" and stats["sync/bytes"] > 0
        assert stats["sync/version"] == 2.0 and rollout.weight_versions() == [2]
        seq = [1, 5, 6, 7, 8, 9]
        probe = pack_batch([episode(seq[:2], seq[2:])], pad_id=0, temperature=1.0)
        got = torch.tensor(rollout.prompt_logprobs([seq])[0])
        assert torch.allclose(got, learner.compute_logprobs(probe)[0, 1:len(seq)], atol=1e-4)
    finally:
        rollout.shutdown()
        learner.shutdown()
