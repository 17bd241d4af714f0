"""Log-probs and entropy of a batch's tokens on one learner rank, micro-batch by micro-batch.

`selected_logprobs_and_entropy` computes the LM head only at the wanted positions (padded rows);
`learner.packing` does the same packed, each distinct prompt once. `TokenForward` runs either over a
batch's micro-batches, pads every rank to the same micro-batch count (ZeRO reduces gradients inside
each backward, so every rank must run as many), and reassembles [B, L] log-probs.

What it does not do: compute a loss or step the optimizer (learner.worker).
"""
from __future__ import annotations

import contextlib
import math

import torch

from forkrl.learner.entropy import token_logprobs_and_entropy
from forkrl.learner.packing import packed_logprobs_and_entropy
from forkrl.learner.types import TrainBatch


def selected_logprobs_and_entropy(forward, head: torch.nn.Module, input_ids: torch.Tensor,
                                  attention_mask: torch.Tensor, where: torch.Tensor, temperature: float,
                                  chunk_size: int, entropy_grad: bool = False
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob, entropy) of input_ids[:, 1:] given the prefix, [B, L-1], computed only where `where`
    ([B, L-1] bool) is True and 0 elsewhere.

    Why: the LM head's logits, [positions x vocab], are the largest tensor of a step, and the loss
    reads only the response tokens (no prompt or padding position). `forward` (the DeepSpeed engine
    or a plain HF model) runs as usual, so the engine's forward still arms its backward hooks; a
    forward pre-hook on `head` (the model's `get_output_embeddings()`) narrows the head's input from
    [B, L, H] to the selected rows [N, H], so logits exist only there. Whatever the model applies
    after its head (Gemma-2's final-logit softcapping, Cohere's logit scale, Granite's division)
    is elementwise and acts on those rows exactly as on all of them. A model that calls its head
    otherwise than once on [B, L, H] hidden states, or reshapes the logits, is refused with an error.

    The head runs once on the N rows, not in chunks: under grad, autograd keeps its [N, V] output for
    backward whatever the chunking; the float32 softmax math is chunked by the kernel
    (`token_logprobs_and_entropy`). When `where` is empty one position is computed anyway (then
    zeroed), so that the head is in every backward graph: ZeRO reduces each parameter's gradient in
    every backward on every rank, and a rank that skipped the head would desynchronise them.
    """
    batch, length = input_ids.shape
    rows = where
    if not bool(where.any()):
        rows = torch.zeros_like(where)
        rows[0, 0] = True
    hidden_rows = torch.nn.functional.pad(rows, (0, 1))  # [B, L]: the last position predicts nothing
    calls: list[tuple[int, ...]] = []

    def narrow(module, args):
        calls.append(tuple(args[0].shape))
        if len(calls) > 1 or calls[0][:2] != (batch, length):
            raise RuntimeError(
                f"the model calls its output embedding on hidden states of shapes {calls}: computing "
                f"logits only at the loss positions needs one call on [B, L, H] = [{batch}, {length}, H]")
        return (args[0][hidden_rows],) + tuple(args[1:])

    handle = head.register_forward_pre_hook(narrow)
    try:
        logits = forward(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    finally:
        handle.remove()
    n = int(rows.sum())
    if not calls or logits.shape[:-1] != (n,):
        raise RuntimeError(f"the model returned logits of shape {tuple(logits.shape)} for {n} selected "
                           "rows: it does not return its head's output as its logits")
    lp, ent = token_logprobs_and_entropy(logits, input_ids[:, 1:][rows], temperature, chunk_size,
                                         entropy_grad=entropy_grad)
    keep = where.to(lp.dtype)  # 0 on the stand-in position of an empty `where`
    return (torch.zeros(rows.shape, dtype=lp.dtype, device=lp.device).masked_scatter(rows, lp) * keep,
            torch.zeros(rows.shape, dtype=ent.dtype, device=ent.device).masked_scatter(rows, ent) * keep)


def all_reduce(t: torch.Tensor, world_size: int, device: torch.device, op: str = "sum") -> torch.Tensor:
    """Sum (or max) of `t` over the ranks' default group, back on CPU; `t` itself with one rank."""
    import torch.distributed as dist

    if world_size > 1:
        t = t.to(device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t.cpu()


class TokenForward:
    """The rank's forward passes: (log-prob, entropy) where wanted, packed when `packing`, padded else.

    `engine` is the DeepSpeed engine (its `module` the HF model); other models (the reference) go
    through `forward` / `logprobs_of` as `model`."""

    def __init__(self, engine, device: torch.device, dtype: torch.dtype, world_size: int,
                 micro_batch_size: int, chunk_size: int, autocast: str, packing: bool = False) -> None:
        self.engine, self.device, self.dtype, self.world_size = engine, device, dtype, world_size
        self.micro_batch_size, self.chunk_size, self.autocast_mode = micro_batch_size, chunk_size, autocast
        self.packing = packing

    def packing_self_check(self) -> str:
        """'' when the packed forward gives this model's padded log-probs on a small two-prompt
        batch, else why not: a guard beside `packing_supported` for what a config does not show.
        Runs on every rank alike (under ZeRO-3 a forward is a collective)."""
        g = torch.Generator().manual_seed(0)
        vocab = self.engine.module.config.vocab_size
        rows = [(6, 5), (6, 8), (9, 3), (9, 7)]  # (prompt, response) lengths; two prompts, two samples
        width = max(p + r for p, r in rows)
        prompts = {p: torch.randint(0, vocab, (p,), generator=g) for p, _ in rows}
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        attn = torch.zeros_like(ids)
        where = torch.zeros(len(rows), width - 1, dtype=torch.bool)
        for b, (p, r) in enumerate(rows):
            ids[b, :p], ids[b, p:p + r] = prompts[p], torch.randint(0, vocab, (r,), generator=g)
            attn[b, :p + r] = 1
            where[b, p - 1:p + r - 1] = True
        ids, attn, where = ids.to(self.device), attn.to(self.device), where.to(self.device)
        module = self.engine.module
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                padded, _ = selected_logprobs_and_entropy(self.engine, module.get_output_embeddings(), ids,
                                                          attn, where, 1.0, self.chunk_size)
                packed, _ = packed_logprobs_and_entropy(self.engine, module, ids, attn, where, 1.0,
                                                        self.chunk_size, self.dtype, self.device)
        finally:
            module.train(was_training)
        gap = float((packed.float() - padded.float()).abs().max())
        tol = 1e-3 if self.dtype == torch.float32 else 5e-2
        return "" if gap <= tol else f"self-check: packed log-probs differ from padded by {gap:.3g} (> {tol:g})"

    def forward(self, model, mb: TrainBatch, grad: bool, entropy_grad: bool = False,
                positions: str = "loss"):
        """(logprobs, entropy) of input_ids[:, 1:] given the prefix, both [B, L-1], computed where
        `positions` says and 0 elsewhere: "loss" = the loss tokens (all the loss and its metrics
        read), "real" = every real token (compute_logprobs: callers compare prompt log-probs too).
        "loss" runs packed when `self.packing` (each distinct prompt once, no padding); "real" always
        runs padded, as it wants every position and shares nothing."""
        ids = mb.input_ids.to(self.device)
        attn = mb.attention_mask.to(self.device)
        wanted = mb.loss_mask if positions == "loss" else mb.attention_mask
        hf_model = self.engine.module if model is self.engine else model
        with torch.set_grad_enabled(grad), self.autocast():
            if self.packing and positions == "loss":  # "real": every position wanted, nothing shared
                return packed_logprobs_and_entropy(
                    model, hf_model, ids, attn,
                    wanted[:, 1:].to(self.device) > 0, mb.temperature, self.chunk_size,
                    self.dtype, self.device, entropy_grad=entropy_grad)
            return selected_logprobs_and_entropy(
                model, hf_model.get_output_embeddings(), ids, attn, wanted[:, 1:].to(self.device) > 0,
                mb.temperature, self.chunk_size, entropy_grad=entropy_grad)

    def autocast(self):
        """learner.autocast around a forward: the backward follows the dtypes autocast chose."""
        if self.autocast_mode == "none":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)  # the one other value

    def micro_batches(self, part: TrainBatch, count: int, fallback: TrainBatch
                      ) -> list[tuple[TrainBatch, bool]]:
        """`part`'s micro-batches plus zero-loss dummies up to `count` (same count on every rank)."""
        mbs = [(mb, True) for mb in part.micro_batches(self.micro_batch_size)]
        if len(mbs) < count:
            if fallback.num_seqs > 0:
                dummy = fallback.select([0], trim=True)
            else:  # this rank got no sequences at all
                z = torch.zeros(1, 2)
                dummy = TrainBatch(z.long(), torch.ones(1, 2, dtype=torch.long), z, z, z)
            mbs += [(dummy, False)] * (count - len(mbs))
        return mbs

    def max_micro_count(self, parts: list[TrainBatch]) -> list[int]:
        """Per part, the largest micro-batch count of any rank (a collective with several ranks)."""
        local = torch.tensor([math.ceil(p.num_seqs / self.micro_batch_size) for p in parts],
                             dtype=torch.float64)
        return [int(x) for x in all_reduce(local, self.world_size, self.device, "max").tolist()]

    @torch.no_grad()
    def logprobs_and_entropy_of(self, model, batch: TrainBatch, collective: bool, positions: str
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, L] log-probs, [B, L] entropies) aligned with input_ids, at `positions` (see
        `forward`), 0 elsewhere. collective: pad to the ranks' largest micro-batch count (the policy
        under ZeRO-3)."""
        lps = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
        ents = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
        count = self.max_micro_count([batch])[0] if collective else 0
        row = 0
        for mb, real in self.micro_batches(batch, count, batch):
            lp, ent = self.forward(model, mb, grad=False, positions=positions)
            if real:
                lps[row:row + mb.num_seqs, 1:1 + lp.shape[1]] = lp.float().cpu()
                ents[row:row + mb.num_seqs, 1:1 + ent.shape[1]] = ent.float().cpu()
                row += mb.num_seqs
        return lps, ents

    def logprobs_of(self, model, batch: TrainBatch, collective: bool, positions: str) -> torch.Tensor:
        """The log-prob half of `logprobs_and_entropy_of`."""
        return self.logprobs_and_entropy_of(model, batch, collective, positions)[0]

    def policy_logprobs_and_entropy(self, batch: TrainBatch, positions: str
                                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The current policy's [B, L] log-probs and entropies, in eval mode (no dropout); a collective."""
        was_training = self.engine.module.training
        self.engine.module.eval()
        try:
            return self.logprobs_and_entropy_of(self.engine, batch, collective=True, positions=positions)
        finally:
            self.engine.module.train(was_training)

    def policy_logprobs(self, batch: TrainBatch, positions: str) -> torch.Tensor:
        """The current policy's [B, L] log-probs, in eval mode (no dropout); a collective."""
        return self.policy_logprobs_and_entropy(batch, positions)[0]
