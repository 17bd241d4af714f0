"""Per-token loss -> scalar (verl's `loss_agg_mode`; docs/ALGORITHMS.md §0 of the project's shared
docs), with global normalisers.

Why global normalisers: the learner sums micro-batch losses (gradient accumulation, and an
all-reduce over ranks). A micro-batch's own `mask.sum()` would weight its tokens by the wrong
denominator; passing the whole batch's token / sequence count makes the sum of shard losses equal
the unsharded loss exactly, for every mode (tests/test_losses.py checks it).
"""
from __future__ import annotations

from typing import Optional

import torch


def aggregate(
    values: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    *,
    num_tokens: Optional[float] = None,
    num_seqs: Optional[float] = None,
    norm_constant: Optional[float] = None,
) -> torch.Tensor:
    """Reduce [B, T] `values` over `mask` (float or bool).

    Local defaults: num_tokens = mask.sum(); num_seqs = rows with at least one masked token (rows
    that are all padding carry no sample). `norm_constant` is Dr.GRPO's C.
    """
    m = mask.to(values.dtype)
    masked = values * m
    if mode == "token-mean":
        denom = num_tokens if num_tokens is not None else m.sum().clamp_min(1.0)
        return masked.sum() / denom
    n_seq = num_seqs if num_seqs is not None else (m.sum(-1) > 0).sum().clamp_min(1)
    if mode == "seq-mean-token-mean":
        return (masked.sum(-1) / m.sum(-1).clamp_min(1.0)).sum() / n_seq
    if mode == "seq-mean-token-sum":
        return masked.sum() / n_seq
    if mode == "seq-mean-token-sum-norm":
        if norm_constant is None:
            raise ValueError("seq-mean-token-sum-norm needs norm_constant")
        return masked.sum() / norm_constant
    raise ValueError(f"unknown aggregation mode {mode!r}")
