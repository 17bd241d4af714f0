"""Per-token log-probs of the sampled labels and entropies of softmax(z / T), in row chunks.

Why this exists: the learner's LM head produces logits of [tokens x vocab] (150k-vocab models make
this the largest tensor of a step). `log_softmax(logits)` plus an entropy would each allocate another
full-size float32 copy, and autograd would keep them for backward. Here forward keeps only per-row
scalars (the log-partition and the entropy), and backward recomputes softmax one chunk at a time and
writes the analytic gradient straight into the single gradient buffer autograd needs anyway:

    d lp / d z   = (onehot(y) - p) / T
    d H  / d z   = -p * (log p + H) / T

This module knows nothing about models, masks or losses; it maps logits and labels to two [..] tensors.
"""
from __future__ import annotations

from typing import Iterator

import torch

DEFAULT_CHUNK_SIZE = 128  # rows: each float32 temporary is rows x vocab (24 MiB at 49k vocab)


def _row_chunks(logits: torch.Tensor, chunk_size: int) -> Iterator[tuple[int, slice]]:
    """Yield (batch index, row slice) pairs covering a [B, T, V] tensor; each chunk is a view."""
    batch, rows = logits.shape[0], logits.shape[1]
    for b in range(batch):
        for start in range(0, rows, chunk_size):
            yield b, slice(start, min(start + chunk_size, rows))


def _as_3d(t: torch.Tensor, trailing: int) -> torch.Tensor:
    """View t as [B, T, *trailing] without copying; prefer one flat batch so chunks are large."""
    lead = t.shape[: t.dim() - trailing]
    tail = t.shape[t.dim() - trailing :]
    try:
        return t.view(1, -1, *tail)
    except RuntimeError:  # non-viewable (e.g. logits[:, :-1]): chunk along T inside each row
        return t.view(-1, lead[-1], *tail) if len(lead) >= 2 else t.unsqueeze(0)


class _ChunkedLogprobEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, temperature, chunk_size):  # noqa: D401 - autograd protocol
        z3 = _as_3d(logits, 1)
        y3 = labels.reshape(z3.shape[:2])
        # float32 math for half-precision logits; float64 stays float64 (gradcheck, tests)
        cdt = torch.float64 if logits.dtype == torch.float64 else torch.float32
        lp = torch.empty(z3.shape[:2], dtype=cdt, device=logits.device)
        lse = torch.empty_like(lp)
        ent = torch.empty_like(lp)
        for b, rows in _row_chunks(z3, chunk_size):
            z = z3[b, rows].to(cdt)
            if temperature != 1.0:  # a division by 1 is a full pass over the chunk for nothing
                z = z / temperature
            y = y3[b, rows]
            c_lse = torch.logsumexp(z, dim=-1)
            p = torch.softmax(z, dim=-1)
            lse[b, rows] = c_lse
            ent[b, rows] = c_lse - (p * z).sum(-1)
            lp[b, rows] = z.gather(-1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1) - c_lse
            del z, p
        ctx.save_for_backward(logits, labels, lse, ent)
        # A detached entropy (the usual case) then reaches backward as None, not as a zero tensor
        # whose term would cost four more passes over every chunk.
        ctx.set_materialize_grads(False)
        ctx.temperature = temperature
        ctx.chunk_size = chunk_size
        return lp.view(labels.shape), ent.view(labels.shape)

    @staticmethod
    def backward(ctx, grad_lp, grad_ent):
        if grad_lp is None and grad_ent is None:
            return None, None, None, None
        logits, labels, lse, ent = ctx.saved_tensors
        T = ctx.temperature
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)  # contiguous
        z3 = _as_3d(logits, 1)
        g3 = grad.view(z3.shape)
        y3 = labels.reshape(z3.shape[:2])
        glp = grad_lp.reshape(z3.shape[:2]) if grad_lp is not None else None
        gent = grad_ent.reshape(z3.shape[:2]) if grad_ent is not None else None
        for b, rows in _row_chunks(z3, ctx.chunk_size):
            z = z3[b, rows].to(lse.dtype)
            logp = (z / T if T != 1.0 else z) - lse[b, rows].unsqueeze(-1)
            p = logp.exp()
            if glp is not None:
                w = glp[b, rows].unsqueeze(-1)
                g = p * -w
                g.scatter_add_(-1, y3[b, rows].clamp_min(0).unsqueeze(-1), w)
            else:
                g = torch.zeros_like(p)
            if gent is not None:
                g -= gent[b, rows].unsqueeze(-1) * p * (logp + ent[b, rows].unsqueeze(-1))
            if T != 1.0:
                g /= T
            g3[b, rows] = g  # casts to the logits' dtype on the copy
            del z, logp, p, g
        return grad, None, None, None


def token_logprobs_and_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (log p(label), entropy) with the shape of `labels`, float32 (float64 for float64 logits).

    `logits` is [..., V] with labels [...]. Labels < 0 (padding, ignore_index) get lp = 0 and no
    gradient. Entropy is detached unless `entropy_grad` (needed only by an entropy bonus): selectors
    rank on it, and a graph through it would cost a backward pass nobody uses.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    lp, ent = _ChunkedLogprobEntropy.apply(logits, labels, float(temperature), int(chunk_size))
    ignored = labels < 0
    if ignored.any():
        lp = lp.masked_fill(ignored, 0.0)
        ent = ent.masked_fill(ignored, 0.0)
    return lp, (ent if entropy_grad else ent.detach())
