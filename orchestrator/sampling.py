"""What the orchestrator keeps, and how it scores length, before advantages are computed.

DAPO's dynamic sampling and soft overlong penalty (arXiv 2503.14476; docs/ALGORITHMS.md §1). Pure functions
over reward / length tensors; the refill loop (extra generation rounds) lives in the step loop, and
overlong mode 'mask' (truncated responses out of the loss) in orchestrator.batching.
"""
from __future__ import annotations

import torch


def keep_mask_nonzero_variance(rewards: torch.Tensor) -> torch.Tensor:
    """Keep a group iff its rewards are not all equal (0 < #correct < G for 0/1 rewards).

    An all-equal group has zero group-relative advantage, hence zero gradient, yet dilutes the
    token-mean. Compared by max > min rather than var > 0 so float noise cannot keep a flat group.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G], got shape {tuple(rewards.shape)}")
    return rewards.amax(-1) > rewards.amin(-1)


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int) -> torch.Tensor:
    """DAPO soft overlong punishment: 0 up to L - L_c, linear to -1 inside the buffer, -1 beyond L."""
    if not 0 < buffer <= max_len:
        raise ValueError(f"need 0 < buffer <= max_len, got buffer={buffer} max_len={max_len}")
    lengths = lengths.float()
    start = max_len - buffer
    inside = (start - lengths) / buffer
    beyond = torch.where(lengths <= max_len, inside, -torch.ones_like(lengths))
    return torch.where(lengths <= start, torch.zeros_like(lengths), beyond)

