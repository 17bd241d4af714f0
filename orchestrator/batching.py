"""Turning scored generations into the learner's TrainBatch (token-aligned, right-padded)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from learner.types import TrainBatch


@dataclass
class TrainItem:
    prompt_ids: Sequence[int]
    response_ids: Sequence[int]
    logprobs: Sequence[float]
    advantage: float
    train: bool = True  # False keeps the row out of the loss (e.g. masked overlong response)


def pack_batch(items: Sequence[TrainItem], pad_id: int, temperature: float) -> TrainBatch:
    """Row b holds prompt+response; loss positions are the response tokens (the logits at t-1
    predict token t, so position 0 is never a loss position)."""
    if not items:
        raise ValueError("pack_batch needs at least one item")
    L = max(len(it.prompt_ids) + len(it.response_ids) for it in items)
    B = len(items)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    loss_mask = torch.zeros((B, L))
    adv = torch.zeros((B, L))
    lps = torch.zeros((B, L))
    for b, it in enumerate(items):
        p, r = len(it.prompt_ids), len(it.response_ids)
        if len(it.logprobs) != r:
            raise ValueError(f"item {b}: {len(it.logprobs)} log-probs for {r} response tokens")
        ids[b, :p + r] = torch.tensor(list(it.prompt_ids) + list(it.response_ids), dtype=torch.long)
        attn[b, :p + r] = 1
        if it.train and r:
            loss_mask[b, p:p + r] = 1.0
            adv[b, p:p + r] = float(it.advantage)
            lps[b, p:p + r] = torch.tensor(list(it.logprobs), dtype=torch.float32)
    return TrainBatch(input_ids=ids, attention_mask=attn, loss_mask=loss_mask, advantages=adv,
                      rollout_logprobs=lps, temperature=temperature)
