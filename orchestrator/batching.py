"""Turning scored, advantaged Episodes into the learner's TrainBatch (token-aligned, right-padded)."""
from __future__ import annotations

from typing import Sequence

import torch

from forkrl.common.episode import Episode
from forkrl.learner.types import TrainBatch


def pack_batch(episodes: Sequence[Episode], pad_id: int, temperature: float,
               mask_truncated: bool = False) -> TrainBatch:
    """Row b holds prompt+response of episodes[b]; loss positions are the response tokens (the logits
    at t-1 predict token t, so position 0 is never a loss position). `mask_truncated` keeps truncated
    responses out of the loss (overlong mode 'mask'). Every row keeps its weight version."""
    if not episodes:
        raise ValueError("pack_batch needs at least one episode")
    L = max(len(ep.prompt_ids) + len(ep.response_ids) for ep in episodes)
    B = len(episodes)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    loss_mask = torch.zeros((B, L))
    adv = torch.zeros((B, L))
    lps = torch.zeros((B, L))
    for b, ep in enumerate(episodes):
        p, r = len(ep.prompt_ids), len(ep.response_ids)
        if len(ep.logprobs) != r:
            raise ValueError(f"episode {b} ({ep.uid}): {len(ep.logprobs)} log-probs for {r} response tokens")
        if ep.advantage is None:
            raise ValueError(f"episode {b} ({ep.uid}) has no advantage: compute advantages before packing")
        ids[b, :p + r] = torch.tensor(list(ep.prompt_ids) + list(ep.response_ids), dtype=torch.long)
        attn[b, :p + r] = 1
        if r and not (mask_truncated and ep.truncated):
            loss_mask[b, p:p + r] = 1.0
            adv[b, p:p + r] = float(ep.advantage)
            lps[b, p:p + r] = torch.tensor(list(ep.logprobs), dtype=torch.float32)
    versions = torch.tensor([ep.weight_version for ep in episodes], dtype=torch.long)
    return TrainBatch(input_ids=ids, attention_mask=attn, loss_mask=loss_mask, advantages=adv,
                      rollout_logprobs=lps, temperature=temperature, weight_version=versions)
