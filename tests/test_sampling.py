"""Dynamic sampling and overlong handling (docs/ALGORITHMS.md §1)."""
import pytest
import torch

from forkrl.orchestrator.sampling import keep_mask_nonzero_variance, overlong_penalty


def test_keep_iff_some_but_not_all_correct():
    R = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [0, 1, 1, 1]]).float()
    assert keep_mask_nonzero_variance(R).tolist() == [False, False, True, True]


def test_keep_generalises_to_real_valued_rewards():
    R = torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.5, 0.5], [-1.0, -1.0, -1.0]])
    keep = keep_mask_nonzero_variance(R)
    assert keep.dtype == torch.bool and keep.tolist() == [False, True, False]


def test_overlong_penalty_piecewise():
    L, Lc = 100, 20
    lengths = torch.tensor([10, 80, 90, 100, 101, 500])
    torch.testing.assert_close(overlong_penalty(lengths, L, Lc), torch.tensor([0.0, 0.0, -0.5, -1.0, -1.0, -1.0]))


def test_overlong_penalty_is_monotone_and_bounded():
    p = overlong_penalty(torch.arange(0, 200), 128, 32)
    assert torch.all(p[1:] <= p[:-1]) and p.min() == -1 and p.max() == 0


def test_overlong_penalty_buffer_bounds():
    for bad in (0, -1, 11):
        with pytest.raises(ValueError, match="0 < buffer <= max_len"):
            overlong_penalty(torch.tensor([1]), 10, bad)
    # buffer 1: the last token before the limit is free, the limit costs -1; buffer == max_len: linear from 0
    torch.testing.assert_close(overlong_penalty(torch.tensor([9, 10, 11]), 10, 1), torch.tensor([0.0, -1.0, -1.0]))
    torch.testing.assert_close(overlong_penalty(torch.tensor([0, 5, 10]), 10, 10), torch.tensor([0.0, -0.5, -1.0]))


def test_keep_mask_needs_groups():
    with pytest.raises(ValueError, match="num_groups"):
        keep_mask_nonzero_variance(torch.ones(4))
    assert keep_mask_nonzero_variance(torch.tensor([[0.0, 1e-9]])).tolist() == [True]

