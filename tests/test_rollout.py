"""Rollout actors: vLLM and the HF reference agree on sampling log-probs, and weight loads take effect."""
import pytest
import ray
import torch

from actors.config import RolloutConfig
from actors.rollout import RolloutGroup, RolloutWorker


def flat_buckets(state: dict[str, torch.Tensor]):
    """A one-bucket plan in the learner's wire format (name, dtype, shape) + its flat tensor."""
    names = [n for n in state if n != "lm_head.weight"]  # tied to embed_tokens
    plan = [[(n, str(state[n].dtype).removeprefix("torch."), list(state[n].shape)) for n in names]]
    return plan, [torch.cat([state[n].reshape(-1) for n in names])]


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_hf_engine_logprobs_are_the_sampling_distribution(tiny_model_dir):
    cfg = RolloutConfig(backend="hf", samples_per_prompt=3, max_new_tokens=12, temperature=1.0)
    w = RolloutWorker(cfg, str(tiny_model_dir))
    res = w.generate([[1, 5, 6, 7], [1, 9, 10]], seed=0)
    gens = res["generations"]
    assert len(gens) == 6 and {g.prompt_index for g in gens} == {0, 1}
    for g in gens:
        assert len(g.response_ids) == len(g.logprobs) and g.finish_reason in ("stop", "length")
        assert g.finish_reason == "stop" or len(g.response_ids) == cfg.max_new_tokens
        ref = w.prompt_logprobs([g.prompt_ids + g.response_ids])[0][len(g.prompt_ids) - 1:]
        assert torch.allclose(torch.tensor(g.logprobs), torch.tensor(ref), atol=1e-4)


def test_hf_engine_temperature_changes_logprobs(tiny_model_dir):
    hot = RolloutWorker(RolloutConfig(backend="hf", samples_per_prompt=1, max_new_tokens=4, temperature=2.0),
                        str(tiny_model_dir))
    g = hot.generate([[1, 5, 6, 7]], seed=1)["generations"][0]
    raw = hot.prompt_logprobs([g.prompt_ids + g.response_ids])[0][len(g.prompt_ids) - 1:]
    assert not torch.allclose(torch.tensor(g.logprobs), torch.tensor(raw), atol=1e-3)


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
        gens = out["generations"]
        assert len(gens) == 12 and out["tokens"] == sum(len(g.response_ids) for g in gens)
        assert sorted({g.prompt_index for g in gens}) == [0, 1, 2]
        for g in gens[:4]:
            ref = hf.prompt_logprobs([g.prompt_ids + g.response_ids])[0][len(g.prompt_ids) - 1:]
            assert torch.allclose(torch.tensor(g.logprobs), torch.tensor(ref), atol=2e-3), (g.logprobs, ref)

        # Push a different model's weights through the object store; the engine must now score like it.
        other = build_tiny_model(tmp_path / "other", seed=123)
        state = AutoModelForCausalLM.from_pretrained(other).state_dict()
        plan, flats = flat_buckets(state)
        group.load_from_object_store(plan, [ray.put(f) for f in flats], version=5)
        assert group.weight_versions() == [5]
        seq = [1, 5, 6, 7, 8, 9, 10, 11, 12]
        got = torch.tensor(group.prompt_logprobs([seq])[0])
        want = torch.tensor(RolloutWorker(cfg.model_copy(update={"backend": "hf"}), str(other))
                            .prompt_logprobs([seq])[0])
        before = torch.tensor(hf.prompt_logprobs([seq])[0])
        assert not torch.allclose(want, before, atol=1e-2)
        assert torch.allclose(got, want, atol=2e-3), (got, want)
        assert all(g.weight_version == 5 for g in group.generate([[1, 5]], seed=0)["generations"])
    finally:
        group.shutdown()
