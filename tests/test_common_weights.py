"""common.weights, the weight push's wire format: the bucket plan and the checked flat round trip."""
import pytest
import torch

from forkrl.common import weights


def test_bucket_plan_covers_every_param_once_and_skips_tied(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    state = model.state_dict()
    assert "lm_head.weight" in state  # tied to model.embed_tokens.weight
    plan = weights.bucket_plan(state.items(), bucket_mb=0.1)
    names = [n for b in plan for n, _, _ in b]
    assert "lm_head.weight" not in names
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())  # each exactly once
    for bucket in plan:
        assert len({dt for _, dt, _ in bucket}) == 1
        assert len(bucket) == 1 or weights.bucket_numel(bucket) * 4 <= 0.1 * 2**20
    # DeepSpeed's "module." prefix is stripped; shapes and the flat round trip are exact.
    wrapped = [("module." + n, p) for n, p in model.named_parameters()]
    assert weights.bucket_plan(wrapped, 0.1) == plan
    flat = weights.pack_bucket(plan[0], state)
    for name, t in weights.unpack_bucket(flat, plan[0]):
        assert torch.equal(t, state[name])


PLAN = [[("a", "float32", (2, 3)), ("b", "float32", (4,))], [("c", "bfloat16", (3,))]]


def test_unpack_rejects_a_flat_of_another_plan():
    bucket = PLAN[0]
    assert [n for n, _ in weights.unpack_bucket(torch.zeros(10), bucket)] == ["a", "b"]
    with pytest.raises(ValueError, match="bucket of 10 x torch.float32 received 11"):
        weights.unpack_bucket(torch.zeros(11), bucket)
    with pytest.raises(ValueError, match="received 10 x torch.float64"):
        weights.unpack_bucket(torch.zeros(10, dtype=torch.float64), bucket)
    with pytest.raises(ValueError, match="plan has 2 buckets, received 1 flats"):
        list(weights.unpack_flats(PLAN, [torch.zeros(10)]))
    got = dict(weights.unpack_flats(PLAN, [torch.arange(10.0), torch.ones(3, dtype=torch.bfloat16)]))
    assert got["a"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and got["b"].tolist() == [6, 7, 8, 9]
    assert got["c"].dtype == torch.bfloat16 and got["c"].shape == (3,)


def test_a_plan_with_a_wire_dtype_sends_floats_in_it_and_everything_else_as_held():
    state = {"w": torch.tensor([[1.0, 1 / 3], [2.0, 1e-3]]), "steps": torch.tensor([7, 8]),
             "b": torch.tensor([0.1, 0.2, 0.3])}
    plan = weights.bucket_plan(state.items(), bucket_mb=1, wire_dtype=torch.bfloat16)
    assert plan == [[("w", "bfloat16", (2, 2)), ("b", "bfloat16", (3,))], [("steps", "int64", (2,))]]
    flat = weights.pack_bucket(plan[0], state)
    assert flat.dtype == torch.bfloat16 and flat.numel() == 7  # 2 bytes per value on the wire, not 4
    got = dict(weights.unpack_bucket(flat, plan[0]))
    assert got["w"].dtype == torch.bfloat16
    assert got["w"].float().tolist() == [[1.0, 0.333984375], [2.0, 0.00099945068359375]]
    assert torch.equal(dict(weights.unpack_bucket(weights.pack_bucket(plan[1], state), plan[1]))["steps"],
                       state["steps"])
    # Without a wire dtype the plan keeps the parameters' own dtype.
    assert weights.bucket_plan(state.items(), 1)[0][0] == ("w", "float32", (2, 2))
