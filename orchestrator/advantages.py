"""Group-relative advantage estimators, registered by name (docs/ALGORITHMS.md §0).

Input: rewards [num_groups, G], one row per prompt, one column per sampled response. Output has the
same shape: one scalar advantage per response, which the learner broadcasts over its tokens. This
module knows nothing about tokens, masks or filtering (see `orchestrator.sampling`).
Every estimator needs G >= 2 and raises otherwise (verl returns A = R there; see `_need_group_of_two`).
"""
from __future__ import annotations

from typing import Callable

import torch

GRPO_EPS = 1e-6

AdvantageFn = Callable[[torch.Tensor], torch.Tensor]
_ADVANTAGES: dict[str, AdvantageFn] = {}


def register_advantage(name: str) -> Callable[[AdvantageFn], AdvantageFn]:
    def deco(fn: AdvantageFn) -> AdvantageFn:
        if name in _ADVANTAGES:
            raise ValueError(f"advantage estimator {name!r} registered twice")
        _ADVANTAGES[name] = fn
        return fn

    return deco


def _need_group_of_two(name: str, rewards: torch.Tensor) -> None:
    """Every estimator here is group-relative, so all of them refuse a group of one.

    verl instead returns A = R for a one-sample group (its GRPO and Dr.GRPO take mean 0 and std 1 for
    a lone sample, its RLOO leaves the score as it is), which silently turns the run into baseline-free
    REINFORCE: with 0/1 rewards only correct answers are pushed up and nothing is ever pushed down. We raise instead, for all three alike
    (config rule `advantage_needs_a_group` says so before Ray starts).
    """
    if rewards.shape[-1] < 2:
        raise ValueError(
            f"{name} needs at least 2 responses per prompt (got group size {rewards.shape[-1]}): "
            "with one sample there is no group baseline; raise the number of samples per prompt"
        )


@register_advantage("grpo")
def grpo(rewards: torch.Tensor) -> torch.Tensor:
    """(R - mean) / (std + 1e-6); std is Bessel-corrected, as torch.std in verl's GRPO estimator."""
    _need_group_of_two("grpo", rewards)
    mean = rewards.mean(-1, keepdim=True)
    return (rewards - mean) / (rewards.std(-1, keepdim=True) + GRPO_EPS)


@register_advantage("drgrpo")
def drgrpo(rewards: torch.Tensor) -> torch.Tensor:
    """Dr.GRPO drops the std: dividing by it up-weights near-uniform groups (Liu et al. 2025)."""
    _need_group_of_two("drgrpo", rewards)
    return rewards - rewards.mean(-1, keepdim=True)


@register_advantage("rloo")
def rloo(rewards: torch.Tensor) -> torch.Tensor:
    """R_i - mean_{j != i} R_j = G / (G - 1) (R_i - mean): the baseline excludes the sample itself."""
    _need_group_of_two("rloo", rewards)
    g = rewards.shape[-1]
    return (rewards - rewards.mean(-1, keepdim=True)) * (g / (g - 1))


def compute_advantages(name: str, rewards: torch.Tensor) -> torch.Tensor:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G], got shape {tuple(rewards.shape)}")
    try:
        fn = _ADVANTAGES[name]
    except KeyError:
        raise KeyError(f"unknown advantage estimator {name!r}; registered: {sorted(_ADVANTAGES)}") from None
    return fn(rewards.float())
