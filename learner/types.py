"""The record the orchestrator hands the learner: a train batch of CPU tensors.

Plain dataclass, pickles (it crosses Ray as a `ray.put` shard per rank). It knows how to split
itself into rank shards and micro-batches and nothing else: no model, no loss.

Layout (B sequences, L positions, right-padded):
    input_ids[b, t]     prompt + response token ids, padding after the last real token
    attention_mask[b,t] 1 on real tokens
    loss_mask[b, t]     1 where token input_ids[b, t] is a response token to train on. The log-prob of
                        the token at t comes from the logits at t-1, so loss_mask[:, 0] is always 0.
    advantages[b, t]    the sequence's advantage broadcast over its positions
    rollout_logprobs    the sampler's log-prob of input_ids[b, t] (0 where loss_mask is 0): the
                        behaviour policy, which loss.tis corrects towards the learner's old policy
    old_logprobs        optional old (proximal) policy log-probs (else the learner derives them)
    ref_logprobs        optional reference-model log-probs (else the learner's ref model, if any)
    weight_version[b]   the policy version that generated row b (optional)
All per-token tensors are aligned with input_ids; the learner shifts them internally.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

_PER_TOKEN = ("input_ids", "attention_mask", "loss_mask", "advantages", "rollout_logprobs",
              "old_logprobs", "ref_logprobs")


@dataclass
class TrainBatch:
    input_ids: torch.Tensor  # long [B, L]
    attention_mask: torch.Tensor  # long/bool [B, L]
    loss_mask: torch.Tensor  # float [B, L]
    advantages: torch.Tensor  # float [B, L]
    rollout_logprobs: torch.Tensor  # float [B, L]
    old_logprobs: Optional[torch.Tensor] = None  # float [B, L]
    ref_logprobs: Optional[torch.Tensor] = None  # float [B, L]
    temperature: float = 1.0  # sampling temperature: the learner divides logits by it
    # long [B]: the mini-batch (optimizer step) each row belongs to. Set by shard(n, mini_batches) so
    # every rank's k-th mini-batch is its slice of the GLOBAL k-th mini-batch; None = contiguous split.
    mini_batch: Optional[torch.Tensor] = None
    # long [B]: the policy version that generated each row (orchestrator-side staleness bookkeeping;
    # the loss never reads it, off-policy correction uses the log-probs).
    weight_version: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        shape = tuple(self.input_ids.shape)
        if len(shape) != 2:
            raise ValueError(f"input_ids must be [B, L], got {shape}")
        for name in _PER_TOKEN:
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
        for name in ("mini_batch", "weight_version"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != shape[:1]:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape[:1]}")
        if shape[1] > 0 and shape[0] > 0 and bool(self.loss_mask[:, 0].any()):
            raise ValueError("loss_mask[:, 0] must be 0: position 0 has no preceding logits")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def num_seqs(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens: what a forward pass processes."""
        return int(self.attention_mask.sum())

    @property
    def num_loss_tokens(self) -> int:
        """Tokens the loss trains on (the token-mean denominator)."""
        return int(self.loss_mask.sum())

    @property
    def num_loss_seqs(self) -> int:
        """Sequences with at least one loss token (the seq-mean denominator)."""
        return int((self.loss_mask.sum(dim=1) > 0).sum())

    # ---- splitting ---------------------------------------------------------------------------
    def select(self, index: torch.Tensor | list[int], trim: bool = False) -> "TrainBatch":
        """Rows `index` (in that order); `trim` drops trailing all-padding columns."""
        index = torch.as_tensor(index, dtype=torch.long)
        cols = self.input_ids.shape[1]
        if trim and len(index) > 0 and cols > 0:
            last = self.attention_mask[index].long().cumsum(1).argmax(1)  # last real position
            cols = max(int(last.max()) + 1, 2)
        fields = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in _PER_TOKEN and v is not None:
                v = v[index, :cols]
            elif isinstance(v, torch.Tensor):
                v = v[index]
            fields[f.name] = v
        return TrainBatch(**fields)

    @staticmethod
    def cat(batches: list["TrainBatch"]) -> "TrainBatch":
        """Concatenate rows of batches with the same L (e.g. shards of one batch)."""
        fields = {}
        for f in dataclasses.fields(TrainBatch):
            values = [getattr(b, f.name) for b in batches]
            if f.name == "temperature":
                fields[f.name] = values[0]
            elif any(v is None for v in values):
                if not all(v is None for v in values):
                    raise ValueError(f"{f.name} is set in some batches but not all")
                fields[f.name] = None
            else:
                fields[f.name] = torch.cat(values)
        return TrainBatch(**fields)

    def shard(self, n: int, mini_batches: int = 1) -> list["TrainBatch"]:
        """Split into n shards by sequences, balancing real-token counts (greedy longest-first).

        Each shard keeps its sequences in their original order. With n > B some shards are empty
        ([0, L] tensors); the learner handles those (it still joins every collective). With
        mini_batches > 1 the batch is first split into global mini-batches, each sharded over the
        ranks, and rows are tagged with `mini_batch` so `split()` on a shard recovers its slices:
        the k-th optimizer step then sees the same sequences whatever the number of ranks.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if mini_batches > 1 or self.mini_batch is not None:
            per_rank: list[list[TrainBatch]] = [[] for _ in range(n)]
            for k, part in enumerate(self.split(mini_batches)):
                part.mini_batch = torch.full((part.num_seqs,), k, dtype=torch.long)
                for r, piece in enumerate(part._balanced_shards(n)):
                    per_rank[r].append(piece)
            return [TrainBatch.cat(pieces) for pieces in per_rank]
        return self._balanced_shards(n)

    def shard_rows(self, n: int) -> list[list[int]]:
        """Row indices of n token-balanced shards (greedy longest-first), each in original order."""
        lengths = self.attention_mask.sum(dim=1).tolist()
        loads = [0] * n
        members: list[list[int]] = [[] for _ in range(n)]
        for i in sorted(range(self.num_seqs), key=lambda i: (-lengths[i], i)):
            k = min(range(n), key=lambda k: (loads[k], len(members[k]), k))
            loads[k] += lengths[i]
            members[k].append(i)
        return [sorted(m) for m in members]

    def _balanced_shards(self, n: int) -> list["TrainBatch"]:
        return [self.select(rows) for rows in self.shard_rows(n)]

    def split(self, k: int) -> list["TrainBatch"]:
        """k parts for mini-batches: by the `mini_batch` tags if set, else contiguous, (nearly) equal
        sequence counts."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self.mini_batch is not None:
            if self.num_seqs and int(self.mini_batch.max()) >= k:
                raise ValueError(f"rows are tagged with mini-batches up to {int(self.mini_batch.max())}, "
                                 f"but {k} were asked for")
            return [self.select(torch.nonzero(self.mini_batch == j).flatten()) for j in range(k)]
        base, extra = divmod(self.num_seqs, k)
        parts, start = [], 0
        for j in range(k):
            size = base + (1 if j < extra else 0)
            parts.append(self.select(list(range(start, start + size))))
            start += size
        return parts

    def micro_batches(self, size: int) -> list["TrainBatch"]:
        """Consecutive micro-batches of at most `size` sequences, each trimmed of trailing padding."""
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        return [self.select(list(range(s, min(s + size, self.num_seqs))), trim=True)
                for s in range(0, self.num_seqs, size)]
