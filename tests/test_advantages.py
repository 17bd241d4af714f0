"""Group-relative advantages (docs/ALGORITHMS.md §0, §5)."""
import pytest
import torch

from forkrl.orchestrator.advantages import compute_advantages, register_advantage


def rewards(seed=0, groups=5, G=8):
    return torch.randint(0, 2, (groups, G), generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize("name", ["grpo", "drgrpo", "rloo"])
def test_group_sums_to_zero(name):
    A = compute_advantages(name, rewards())
    assert A.shape == (5, 8)
    torch.testing.assert_close(A.sum(-1), torch.zeros(5), atol=1e-5, rtol=0)


def test_grpo_formula():
    R = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(compute_advantages("grpo", R), (R - R.mean()) / (R.std() + 1e-6))


def test_drgrpo_has_no_std():
    R = torch.tensor([[3.0, 1.0]])
    torch.testing.assert_close(compute_advantages("drgrpo", R), torch.tensor([[1.0, -1.0]]))


def test_rloo_leave_one_out_baseline():
    R = torch.tensor([[1.0, 0.0, 0.0, 2.0]])
    expected = torch.stack([R[0, i] - torch.cat([R[0, :i], R[0, i + 1 :]]).mean() for i in range(4)])[None]
    torch.testing.assert_close(compute_advantages("rloo", R), expected)


@pytest.mark.parametrize("name", ["grpo", "drgrpo", "rloo"])
def test_all_equal_group_gets_zero_advantage(name):
    A = compute_advantages(name, torch.ones(3, 4))
    assert torch.all(A == 0)


@pytest.mark.parametrize("name", ["grpo", "drgrpo", "rloo"])
def test_group_of_one_raises_clearly(name):
    """All three refuse G = 1 alike (verl would return A = R: baseline-free REINFORCE). Dr.GRPO used to
    return R - mean(R) = 0 here, a silent no-op run."""
    with pytest.raises(ValueError, match=f"{name} needs at least 2 responses"):
        compute_advantages(name, torch.tensor([[1.0], [0.0]]))


def test_unknown_name_and_duplicate_registration():
    with pytest.raises(KeyError, match="registered"):
        compute_advantages("ppo", rewards())
    with pytest.raises(ValueError, match="twice"):
        register_advantage("grpo")(lambda r: r)
    with pytest.raises(ValueError, match="num_groups"):
        compute_advantages("grpo", torch.ones(8))


def test_group_of_two_is_enough_and_rloo_of_two_is_the_difference():
    R = torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(compute_advantages("rloo", R), torch.tensor([[1.0, -1.0]]))
    # std of (1, 0) (Bessel) is 1/sqrt(2): A = +-0.5 * sqrt(2) / (1 + 1e-6 sqrt(2))
    torch.testing.assert_close(compute_advantages("grpo", R), torch.tensor([[0.70710578, -0.70710578]]))


def test_grpo_epsilon_is_added_to_the_std():
    """A near-flat group: std ~ 7e-7, comparable to eps = 1e-6, so the sign of eps shows."""
    R = torch.tensor([[0.0, 1e-6]])
    std = 1e-6 / 2 ** 0.5
    want = torch.tensor([[-0.5e-6, 0.5e-6]]) / (std + 1e-6)
    torch.testing.assert_close(compute_advantages("grpo", R), want)
    assert compute_advantages("grpo", R).abs().max() < 0.5


def test_registered_estimators_are_the_module_functions():
    from forkrl.orchestrator import advantages

    R = torch.tensor([[1.0, 0.0, 3.0]])
    for name in ("grpo", "drgrpo", "rloo"):
        torch.testing.assert_close(getattr(advantages, name)(R), compute_advantages(name, R))
