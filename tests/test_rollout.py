"""Rollout actors: vLLM and the HF reference agree on sampling log-probs, and weight loads take effect."""
import pytest
import ray
import torch

from forkrl.actors.config import RolloutConfig
from forkrl.actors.rollout import RolloutGroup, RolloutWorker


def flat_buckets(state: dict[str, torch.Tensor]):
    """A one-bucket plan in the learner's wire format (name, dtype, shape) + its flat tensor."""
    names = [n for n in state if n != "lm_head.weight"]  # tied to embed_tokens
    plan = [[(n, str(state[n].dtype).removeprefix("torch."), list(state[n].shape)) for n in names]]
    return plan, [torch.cat([state[n].reshape(-1) for n in names])]


@pytest.fixture(scope="module")
def ray_local():
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_hf_engine_logprobs_are_the_sampling_distribution(tiny_model_dir):
    cfg = RolloutConfig(backend="hf", samples_per_prompt=3, max_new_tokens=12, temperature=1.0)
    w = RolloutWorker(cfg, str(tiny_model_dir))
    res = w.generate([[1, 5, 6, 7], [1, 9, 10]], seed=0)
    gens = res.episodes
    assert res.tokens == sum(len(g.response_ids) for g in gens) and res.busy_seconds == res.seconds > 0
    assert len(gens) == 6 and {g.prompt_index for g in gens} == {0, 1}
    for g in gens:
        assert len(g.response_ids) == len(g.logprobs) and g.finish_reason in ("stop", "length")
        assert g.finish_reason == "stop" or len(g.response_ids) == cfg.max_new_tokens
        ref = w.prompt_logprobs([g.prompt_ids + g.response_ids])[0][len(g.prompt_ids) - 1:]
        assert torch.allclose(torch.tensor(g.logprobs), torch.tensor(ref), atol=1e-4)


@pytest.mark.parametrize("T", [2.0, 0.5])
def test_hf_engine_logprobs_are_log_softmax_of_logits_over_T(tiny_model_dir, T):
    """The ratio's lp_old is log_softmax(z / T)[y] of the distribution actually sampled from (docs/ALGORITHMS.md
    §0): recomputed here from the raw logits of the same model."""
    w = RolloutWorker(RolloutConfig(backend="hf", samples_per_prompt=2, max_new_tokens=6, temperature=T),
                      str(tiny_model_dir))
    gens = w.generate([[1, 5, 6, 7]], seed=1).episodes
    model = w.engine.model
    for g in gens:
        ids = torch.tensor([g.prompt_ids + g.response_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(g.prompt_ids) - 1:-1].float()
        resp = torch.tensor(g.response_ids)
        want = torch.log_softmax(logits / T, -1).gather(-1, resp[:, None]).squeeze(-1)
        raw = torch.log_softmax(logits, -1).gather(-1, resp[:, None]).squeeze(-1)
        torch.testing.assert_close(torch.tensor(g.logprobs), want, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(want, raw, atol=1e-3)  # T is far enough from 1 to tell them apart


@pytest.mark.slow
def test_vllm_actor_matches_hf_and_loads_pushed_weights(ray_local, tiny_model_dir, tmp_path):
    from tiny_model import build_tiny_model
    from transformers import AutoModelForCausalLM

    cfg = RolloutConfig(backend="vllm", num_actors=1, cpus_per_actor=1, samples_per_prompt=4,
                        max_new_tokens=10, max_model_len=128, kv_cache_gb=0.25)
    group = RolloutGroup(cfg, str(tiny_model_dir))
    hf = RolloutWorker(cfg.model_copy(update={"backend": "hf"}), str(tiny_model_dir))
    try:
        out = group.generate([[1, 5, 6, 7], [1, 9, 10], [1, 11]], seed=3)
        gens = out.episodes
        assert len(gens) == 12 and out.tokens == sum(len(g.response_ids) for g in gens)
        assert sorted({g.prompt_index for g in gens}) == [0, 1, 2]
        for g in gens[:4]:
            ref = hf.prompt_logprobs([g.prompt_ids + g.response_ids])[0][len(g.prompt_ids) - 1:]
            assert torch.allclose(torch.tensor(g.logprobs), torch.tensor(ref), atol=2e-3), (g.logprobs, ref)

        # Push a different model's weights through the object store; the engine must now score like it.
        other = build_tiny_model(tmp_path / "other", seed=123)
        state = AutoModelForCausalLM.from_pretrained(other).state_dict()
        plan, flats = flat_buckets(state)
        group.receive_weights(plan, 5, "object_store", [ray.put(f) for f in flats])
        assert group.weight_versions() == [5]
        seq = [1, 5, 6, 7, 8, 9, 10, 11, 12]
        got = torch.tensor(group.prompt_logprobs([seq])[0])
        want = torch.tensor(RolloutWorker(cfg.model_copy(update={"backend": "hf"}), str(other))
                            .prompt_logprobs([seq])[0])
        before = torch.tensor(hf.prompt_logprobs([seq])[0])
        assert not torch.allclose(want, before, atol=1e-2)
        assert torch.allclose(got, want, atol=2e-3), (got, want)
        assert all(g.weight_version == 5 for g in group.generate([[1, 5]], seed=0).episodes)
    finally:
        group.shutdown()
