"""One learner rank: an HF causal LM inside a DeepSpeed engine, trained with a registered policy loss.

`LearnerWorker` is a plain class (a test drives it with world_size 1, no Ray); `LearnerActor` is the
thin `@ray.remote` wrapper that `learner.group.LearnerGroup` places, one per rank.

Loss normalisation (why the gradient does not depend on sharding): for each optimizer step (one
mini-batch) the global token/sequence counts of that mini-batch over all ranks are all-reduced first
and handed to the loss as `global_num_tokens` / `global_num_seqs`, so the loss of one micro-batch is
its share of the global loss (sum over micro-batches and ranks = the global token-mean / seq-mean).
Gradients are accumulated as sums (`backward(scale_wrt_gas=False)` with DeepSpeed's caller-managed
accumulation), and since DeepSpeed averages gradients over the data-parallel ranks, each rank
multiplies its loss by world_size. Every rank runs the same number of micro-batches per step (ZeRO
reduces gradients inside each backward): a rank with fewer sequences runs zero-loss dummy passes.

What this module does not do: pick the loss (learner.losses), compute advantages, or know about
rollout engines beyond pushing weights through common.weights.
"""
from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from typing import Any, Iterator, Optional

import torch
from pydantic import TypeAdapter

from forkrl.common import weights
from forkrl.learner.config import LearnerConfig
from forkrl.learner.entropy import token_logprobs_and_entropy
from forkrl.learner.loss_config import PolicyLossConfig
from forkrl.learner.losses import LossInputs, compute_policy_loss
from forkrl.learner.packing import packed_logprobs_and_entropy, packing_supported
from forkrl.learner.types import TrainBatch


DEEPSPEED_BUCKET_DEFAULT = 500_000_000  # DeepSpeed's reduce/allgather bucket size, in elements
BUCKETS_PER_MODEL = 8
MIN_BUCKET = 1 << 20


def zero_bucket_size(cfg: LearnerConfig, num_params: int) -> int:
    """Elements per ZeRO reduce / all-gather bucket: cfg.zero_bucket_size, or for 'auto' an eighth
    of the model's parameters (at least 2**20, at most DeepSpeed's 5e8), even as DeepSpeed requires.

    Why: ZeRO-2/3 allocate their gradient-reduce buffer at this size on the training device, whatever
    the model: DeepSpeed's default of 5e8 elements is 1 GiB in bf16 (2 GiB when it stages in fp32)
    per rank, several times a 135M model's whole gradient. On a GPU that memory is held; on CPU
    only the pages written count, so the bench measures no RSS change there. An eighth of the model
    still reduces in a handful of large collectives per backward; the floor keeps tiny models from
    reducing tensor by tensor.
    """
    if cfg.zero_bucket_size != "auto":
        return cfg.zero_bucket_size
    size = min(DEEPSPEED_BUCKET_DEFAULT, max(MIN_BUCKET, math.ceil(num_params / BUCKETS_PER_MODEL)))
    return size + size % 2


def deepspeed_config(cfg: LearnerConfig, world_size: int, dtype: str, num_params: int) -> dict[str, Any]:
    """The DeepSpeed config dict derived from LearnerConfig (the only place it is built)."""
    bucket = zero_bucket_size(cfg, num_params)
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": cfg.micro_batch_size * world_size,
        # The caller owns the accumulation boundary: any number of backward() calls, then step().
        "managed_gradient_accumulation": False,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage, "overlap_comm": False,
                              "contiguous_gradients": True, "reduce_bucket_size": bucket,
                              "allgather_bucket_size": bucket},
        "optimizer": {"type": "AdamW", "params": {
            "lr": cfg.lr, "betas": list(cfg.betas), "eps": cfg.eps,
            "weight_decay": cfg.weight_decay,
            # torch.optim.AdamW instead of DeepSpeed's JIT-compiled fused/CPU Adam.
            "torch_adam": True, "adam_w_mode": True}},
        "bf16": {"enabled": dtype == "bfloat16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.warmup_steps > 0:
        ds["scheduler"] = {"type": "WarmupLR", "params": {
            "warmup_min_lr": 0.0, "warmup_max_lr": cfg.lr,
            "warmup_num_steps": cfg.warmup_steps, "warmup_type": "linear"}}
    return ds


# Loss metrics that are a micro-batch's share of a globally normalised sum (the loss terms of
# learner.losses.compute_policy_loss): summed over micro-batches and ranks. Every other loss metric
# is a local mean (clip fractions, ratio, covariance stats), averaged weighted by loss tokens.
_SHARE_METRICS = frozenset({"loss", "pg_loss", "penalty", "kl", "entropy_bonus"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


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


class _Metrics:
    """Metrics gathered over micro-batches and ranks.

    `add`: a local mean, combined as sum(w * v) / sum(w) (w = tokens). `add_share`: a micro-batch's
    share of a globally normalised sum (the loss terms), summed over micro-batches and ranks and
    divided by the number of optimizer steps.
    """

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}
        self.shares: dict[str, float] = {}

    def add(self, name: str, value: float, weight: float = 1.0) -> None:
        s = self.sums.setdefault(name, [0.0, 0.0])
        s[0] += float(value) * weight
        s[1] += weight

    def add_share(self, name: str, value: float) -> None:
        self.shares[name] = self.shares.get(name, 0.0) + float(value)

    def reduce(self, world_size: int, steps: int) -> dict[str, float]:
        import torch.distributed as dist

        gathered: list[Any] = [(self.sums, self.shares)]
        if world_size > 1:
            gathered = [None] * world_size
            dist.all_gather_object(gathered, (self.sums, self.shares))
        total: dict[str, list[float]] = {}
        shares: dict[str, float] = {}
        for sums, rank_shares in gathered:
            for k, (v, w) in sums.items():
                t = total.setdefault(k, [0.0, 0.0])
                t[0] += v
                t[1] += w
            for k, v in rank_shares.items():
                shares[k] = shares.get(k, 0.0) + v
        out = {k: (v / w if w > 0 else 0.0) for k, (v, w) in total.items()}
        out.update({k: v / max(steps, 1) for k, v in shares.items()})
        return dict(sorted(out.items()))


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the heap for reuse: no mmap'd chunks (those are
    unmapped on free, and a new one faults in fresh zeroed pages) and no trimming of the heap's top.
    Process-wide, for allocations from now on. Returns False where it cannot apply (no glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):  # musl and others: not glibc's knobs
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


class LearnerWorker:
    """One data-parallel rank. Construct all ranks concurrently: init joins the default group."""

    def __init__(self, cfg: LearnerConfig, model_path: str, rank: int = 0, world_size: int = 1,
                 master_addr: str = "127.0.0.1", master_port: Optional[int] = None,
                 seed: int = 0) -> None:
        self.cfg, self.model_path = cfg, str(model_path)
        self.rank, self.world_size = rank, world_size
        self.on_gpu = cfg.gpus_per_rank > 0 and torch.cuda.is_available()
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.on_gpu else torch.device("cpu")
        self.dtype_name = cfg.resolve_dtype(self.on_gpu)
        self.dtype = weights.str_dtype(self.dtype_name)
        self.steps = 0
        self._plan: Optional[weights.Plan] = None
        self._sender: Optional[weights.CollectiveSender] = None
        if not self.on_gpu and cfg.cpu_keep_freed_memory:
            keep_freed_memory()

        # DeepSpeed reads the rendezvous from the environment (and asserts LOCAL_RANK); this is a
        # process of its own under Ray, so setting it here touches nothing else.
        os.environ.update({"MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port or free_port()),
                           "RANK": str(rank), "WORLD_SIZE": str(world_size),
                           "LOCAL_RANK": "0" if not self.on_gpu else str(torch.cuda.current_device())})
        import deepspeed
        from transformers import AutoModelForCausalLM

        deepspeed.init_distributed(dist_backend="nccl" if self.on_gpu else "gloo",
                                   auto_mpi_discovery=False, rank=rank, world_size=world_size)
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed * 1009 + rank)

        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype)
        model.config.use_cache = False
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.ds_config = deepspeed_config(cfg, world_size, self.dtype_name,
                                          sum(p.numel() for p in model.parameters()))
        self.engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                               config=self.ds_config)
        why_not = "off in the config" if not cfg.packing else (
            "gradient checkpointing drops the prefix's KV cache" if cfg.gradient_checkpointing
            else packing_supported(model.config) or self._packing_self_check())
        self.packing = not why_not
        if rank == 0:
            print(f"[learner] packed forward: {'on' if self.packing else 'off (' + why_not + ')'}", flush=True)
        self.ref = None
        if cfg.ref_model:
            self.ref = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype)
            self.ref.to(self.device).eval().requires_grad_(False)

    def _packing_self_check(self) -> str:
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
                                                          attn, where, 1.0, self.cfg.logprob_chunk_size)
                packed, _ = packed_logprobs_and_entropy(self.engine, module, ids, attn, where, 1.0,
                                                        self.cfg.logprob_chunk_size, self.dtype, self.device)
        finally:
            module.train(was_training)
        gap = float((packed.float() - padded.float()).abs().max())
        tol = 1e-3 if self.dtype == torch.float32 else 5e-2
        return "" if gap <= tol else f"self-check: packed log-probs differ from padded by {gap:.3g} (> {tol:g})"

    # ---- forward helpers ---------------------------------------------------------------------
    def _forward(self, model, mb: TrainBatch, grad: bool, entropy_grad: bool = False,
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
        with torch.set_grad_enabled(grad), self._autocast():
            if self.packing and positions == "loss":  # "real": every position wanted, nothing shared
                return packed_logprobs_and_entropy(
                    model, hf_model, ids, attn,
                    wanted[:, 1:].to(self.device) > 0, mb.temperature, self.cfg.logprob_chunk_size,
                    self.dtype, self.device, entropy_grad=entropy_grad)
            return selected_logprobs_and_entropy(
                model, hf_model.get_output_embeddings(), ids, attn, wanted[:, 1:].to(self.device) > 0,
                mb.temperature, self.cfg.logprob_chunk_size, entropy_grad=entropy_grad)

    def _autocast(self):
        """learner.autocast around a forward: the backward follows the dtypes autocast chose."""
        if self.cfg.autocast == "none":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)  # the one other value

    def _padded_micro_batches(self, part: TrainBatch, count: int, fallback: TrainBatch
                              ) -> list[tuple[TrainBatch, bool]]:
        """`part`'s micro-batches plus zero-loss dummies up to `count` (same count on every rank)."""
        mbs = [(mb, True) for mb in part.micro_batches(self.cfg.micro_batch_size)]
        if len(mbs) < count:
            if fallback.num_seqs > 0:
                dummy = fallback.select([0], trim=True)
            else:  # this rank got no sequences at all
                z = torch.zeros(1, 2)
                dummy = TrainBatch(z.long(), torch.ones(1, 2, dtype=torch.long), z, z, z)
            mbs += [(dummy, False)] * (count - len(mbs))
        return mbs

    def _all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        import torch.distributed as dist

        if self.world_size > 1:
            t = t.to(self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return t.cpu()

    def _max_micro_count(self, parts: list[TrainBatch]) -> list[int]:
        local = torch.tensor([math.ceil(p.num_seqs / self.cfg.micro_batch_size) for p in parts],
                             dtype=torch.float64)
        return [int(x) for x in self._all_reduce(local, "max").tolist()]

    @torch.no_grad()
    def _logprobs_of(self, model, batch: TrainBatch, collective: bool, positions: str) -> torch.Tensor:
        """[B, L] log-probs aligned with input_ids, at `positions` (see `_forward`), 0 elsewhere."""
        out = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
        count = self._max_micro_count([batch])[0] if collective else 0
        row = 0
        for mb, real in self._padded_micro_batches(batch, count, batch):
            lp, _ = self._forward(model, mb, grad=False, positions=positions)
            if real:
                out[row:row + mb.num_seqs, 1:1 + lp.shape[1]] = lp.float().cpu()
                row += mb.num_seqs
        return out

    def _policy_logprobs(self, batch: TrainBatch, positions: str) -> torch.Tensor:
        was_training = self.engine.module.training
        self.engine.module.eval()
        try:
            return self._logprobs_of(self.engine, batch, collective=True, positions=positions)
        finally:
            self.engine.module.train(was_training)

    def compute_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """Current-policy log-probs [B, L] of every real token, prompt included (0 at position 0 and
        on padding); no grad. A collective under ZeRO-3: call on all ranks."""
        return self._policy_logprobs(batch, positions="real")

    def compute_ref_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """Reference-model log-probs [B, L] of the loss tokens (all the KL term reads), 0 elsewhere."""
        if self.ref is None:
            raise RuntimeError("ref_model is off in the learner config")
        return self._logprobs_of(self.ref, batch, collective=False, positions="loss")

    def set_loss(self, loss: PolicyLossConfig) -> None:
        """Replace the policy-loss config from the next train_step on (e.g. a controller adjusting a
        coefficient between steps). A config or its dict form; validated like the config's own.

        What was built at start-up from the loss cannot change: a loss that reads reference
        log-probs needs the reference model loaded (learner.ref_model)."""
        loss = TypeAdapter(PolicyLossConfig).validate_python(loss)
        if loss.uses_reference() and self.ref is None:
            raise ValueError(f"loss (type {loss.type!r}) reads reference log-probs but this learner "
                             "started without ref_model")
        self.cfg = self.cfg.model_copy(update={"loss": loss})

    # ---- training ----------------------------------------------------------------------------
    def train_step(self, batch: TrainBatch, global_num_tokens: Optional[float] = None,
                   global_num_seqs: Optional[float] = None) -> dict[str, float]:
        """One train batch: epochs x mini_batches optimizer steps. Metrics are global (all ranks).

        `global_num_tokens` / `global_num_seqs` (the whole batch over all ranks), when given, are
        checked against the all-reduced counts; the per-mini-batch counts are always all-reduced.
        """
        cfg, start = self.cfg, time.perf_counter()
        if batch.old_logprobs is None and (cfg.recompute_old_logprobs == "always"
                                           or cfg.mini_batches > 1 or cfg.epochs > 1):
            batch.old_logprobs = self._policy_logprobs(batch, positions="loss")
        if self.ref is not None and batch.ref_logprobs is None:
            batch.ref_logprobs = self.compute_ref_logprobs(batch)

        parts = batch.split(cfg.mini_batches)
        local = torch.tensor([[p.num_loss_tokens, p.num_loss_seqs, p.num_tokens] for p in parts],
                             dtype=torch.float64)
        counts = self._all_reduce(local)
        if global_num_tokens is not None and abs(counts[:, 0].sum().item() - global_num_tokens) > 0.5:
            raise ValueError(f"global_num_tokens={global_num_tokens} but the ranks hold "
                             f"{counts[:, 0].sum().item():.0f} loss tokens")
        if global_num_seqs is not None and abs(counts[:, 1].sum().item() - global_num_seqs) > 0.5:
            raise ValueError(f"global_num_seqs={global_num_seqs} but the ranks hold "
                             f"{counts[:, 1].sum().item():.0f} sequences with loss tokens")
        n_micro = self._max_micro_count(parts)
        entropy_grad = cfg.loss.needs_entropy_grad()

        self.engine.train()
        metrics = _Metrics()
        for _ in range(cfg.epochs):
            for k, part in enumerate(parts):
                if counts[k, 0].item() == 0:  # no loss token on any rank: no step (same on all ranks)
                    continue
                g_tok, g_seq = counts[k, 0].item(), counts[k, 1].item()
                for mb, real in self._padded_micro_batches(part, n_micro[k], batch):
                    lp, ent = self._forward(self.engine, mb, grad=True, entropy_grad=entropy_grad)
                    if not real:
                        # Joins ZeRO's per-backward gradient reduction with an all-zero gradient.
                        self.engine.backward(lp.sum() * 0.0, scale_wrt_gas=False)
                        continue
                    mask = mb.loss_mask[:, 1:].to(self.device, torch.float32)
                    old = (mb.old_logprobs[:, 1:].to(self.device) if mb.old_logprobs is not None
                           else lp.detach())
                    ref = mb.ref_logprobs[:, 1:].to(self.device) if mb.ref_logprobs is not None else None
                    inputs = LossInputs(
                        logprobs=lp, old_logprobs=old, advantages=mb.advantages[:, 1:].to(self.device),
                        mask=mask, entropy=ent, ref_logprobs=ref,
                        rollout_logprobs=mb.rollout_logprobs[:, 1:].to(self.device),
                        global_num_tokens=g_tok, global_num_seqs=g_seq, generator=self.generator)
                    loss, loss_metrics = compute_policy_loss(inputs, cfg.loss)
                    self.engine.backward(loss * self.world_size, scale_wrt_gas=False)
                    loss_metrics = dict(loss_metrics, loss=float(loss.detach()))
                    n = float(mask.sum())
                    self._token_metrics(metrics, mb, lp.detach(), ent.detach(), old, ref, mask)
                    for name, value in loss_metrics.items():
                        if name in _SHARE_METRICS:
                            metrics.add_share(name, float(value))
                        elif n > 0:
                            metrics.add(name, float(value), n)
                self.engine.step()
                self.steps += 1
                grad_norm = self.engine.get_global_grad_norm()  # None under ZeRO-0: not reported
                if grad_norm is not None:
                    metrics.add("grad_norm", float(grad_norm), 1.0)
        steps = cfg.epochs * int((counts[:, 0] > 0).sum())
        out = metrics.reduce(self.world_size, steps=steps)
        seconds = time.perf_counter() - start
        train_tokens = float(counts[:, 2].sum()) * cfg.epochs
        out.update(train_tokens=train_tokens, train_loss_tokens=float(counts[:, 0].sum()),
                   train_seqs=float(counts[:, 1].sum()), train_seconds=seconds,
                   tokens_per_s=train_tokens / max(seconds, 1e-9),
                   lr=float(self.engine.get_lr()[0]), optimizer_steps=float(self.steps))
        return out

    def _token_metrics(self, metrics: _Metrics, mb: TrainBatch, lp, ent, old, ref, mask) -> None:
        n = float(mask.sum())
        if n <= 0:
            return
        metrics.add("entropy", float((ent * mask).sum()) / n, n)
        metrics.add("kl_old_k3", float((_k3(old, lp) * mask).sum()) / n, n)
        if ref is not None:
            metrics.add("kl_ref_k3", float((_k3(ref, lp) * mask).sum()) / n, n)
        rollout = mb.rollout_logprobs[:, 1:].to(lp.device)
        metrics.add("rollout_logprob_abs_diff", float(((lp - rollout).abs() * mask).sum()) / n, n)


    # ---- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, directory: str, tag: str) -> None:
        """Model + optimizer + LR scheduler (+ step count, loss RNG) via DeepSpeed. All ranks."""
        self.engine.save_checkpoint(str(directory), tag=tag, client_state={
            "forkrl_steps": self.steps, "forkrl_generator": self.generator.get_state()})

    def load_checkpoint(self, directory: str, tag: str) -> None:
        path, client = self.engine.load_checkpoint(str(directory), tag=tag,
                                                   load_optimizer_states=True,
                                                   load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag!r} under {directory}")
        self.steps = int(client.get("forkrl_steps", 0))
        if "forkrl_generator" in client:
            self.generator.set_state(client["forkrl_generator"])

    def _gathered(self, params):
        """Full parameters inside the context (a collective under ZeRO-3, a no-op otherwise)."""
        if self.cfg.zero_stage == 3:
            import deepspeed

            return deepspeed.zero.GatheredParameters(list(params), modifier_rank=None)
        return contextlib.nullcontext()

    def save_hf(self, directory: str) -> None:
        """Plain HF checkpoint (safetensors + config, tokenizer if the source had one) from rank 0."""
        module = self.engine.module
        with self._gathered(module.parameters()):
            if self.rank == 0:
                module.save_pretrained(str(directory), safe_serialization=True)
                try:
                    from transformers import AutoTokenizer

                    AutoTokenizer.from_pretrained(self.model_path).save_pretrained(str(directory))
                except (OSError, ValueError):
                    pass  # model dir without a tokenizer (e.g. a bare test model)

    def param_stats(self) -> dict[str, float]:
        """Parameter count, global L2 norm and plain sum: cheap fingerprints for tests and logs."""
        module = self.engine.module
        with self._gathered(module.parameters()):
            params = [p for _, p in weights.unique_named_tensors(module.named_parameters())]
            sq = sum(float(p.detach().float().pow(2).sum()) for p in params)
            return {"num_params": float(sum(p.numel() for p in params)), "param_norm": math.sqrt(sq),
                    "param_sum": sum(float(p.detach().double().sum()) for p in params)}

    def named_parameters_cpu(self) -> dict[str, torch.Tensor]:
        """Full parameters under HF names, copied to CPU (tests, small models only)."""
        module = self.engine.module
        with self._gathered(module.parameters()):
            return {n: p.detach().cpu().clone()
                    for n, p in weights.unique_named_tensors(module.named_parameters())}

    # ---- weight push -------------------------------------------------------------------------
    def weight_plan(self) -> weights.Plan:
        """The push's plan, in weight_sync.wire_dtype ('auto' here: as the parameters are held)."""
        if self._plan is None:
            wire = self.cfg.weight_sync.wire_dtype
            self._plan = weights.bucket_plan(self.engine.module.named_parameters(),
                                             self.cfg.weight_sync.bucket_mb,
                                             None if wire == "auto" else weights.str_dtype(wire))
        return self._plan

    def init_weight_group(self, master_addr: str, master_port: int, world_size: int) -> None:
        """Rank 0 joins a separate broadcast group as its rank 0 (receivers are 1..world_size-1)."""
        if self.rank != 0:
            return
        self._sender = weights.CollectiveSender(master_addr, master_port, world_size,
                                                self.cfg.resolve_sync_backend(),
                                                self.cfg.weight_sync.timeout_s)

    def _bucket_tensors(self):
        """Yield (bucket, {name: full tensor}) in plan order (gathering per bucket under ZeRO-3)."""
        params = dict(weights.unique_named_tensors(self.engine.module.named_parameters()))
        for bucket in self.weight_plan():
            chosen = [params[name] for name, _, _ in bucket]
            with self._gathered(chosen):
                yield bucket, {name: params[name] for name, _, _ in bucket}

    def broadcast_weights(self) -> dict[str, float]:
        """Push every bucket over the weight group. Ranks > 0 only join ZeRO-3 gathers."""
        if self.rank != 0:
            for _ in self._bucket_tensors() if self.cfg.zero_stage == 3 else ():
                pass
            return {"bytes": 0, "seconds": 0.0, "buckets": 0}
        if self._sender is None:
            raise RuntimeError("init_weight_group() first")
        start = time.perf_counter()
        # Each flat is packed while its bucket is gathered (the generator is inside the gather).
        total = self._sender.send(self.weight_flats())
        if self.on_gpu:
            torch.cuda.synchronize()
        return {"bytes": total, "seconds": time.perf_counter() - start, "buckets": len(self.weight_plan())}

    def weight_flats(self) -> Iterator[torch.Tensor]:
        """Each bucket's flat tensor in plan order, on the training device: what either transport
        sends (`weights.unpack_bucket` / `unpack_flats` are the receiving end). Rank 0 yields; ranks > 0 yield nothing
        but must consume it too, to join ZeRO-3's gathers."""
        for bucket, tensors in self._bucket_tensors():
            if self.rank == 0:
                yield weights.pack_bucket(bucket, tensors)

    def export_weights_refs(self) -> dict:
        """Object-store push: {"plan", "refs" (one ray.put per bucket), "bytes", "seconds", "buckets"}."""
        import ray

        start, total, refs = time.perf_counter(), 0, []
        for flat in self.weight_flats():
            flat = flat.cpu()
            total += flat.numel() * flat.element_size()
            refs.append(ray.put(flat))
        if self.rank != 0:
            return {"plan": [], "refs": [], "bytes": 0, "seconds": 0.0, "buckets": 0}
        return {"plan": self.weight_plan(), "refs": refs, "bytes": total,
                "seconds": time.perf_counter() - start, "buckets": len(refs)}



def _k3(other: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || other) per token: exp(x) - x - 1, x = other - lp, clamped."""
    x = (other - lp).clamp(-10, 10)
    return x.exp() - x - 1


class LearnerActor:
    """Ray wrapper of one rank. `setup()` builds the worker once rank 0's address is known."""

    def __init__(self, cfg: LearnerConfig, model_path: str, rank: int, world_size: int, seed: int):
        self._args = (cfg, model_path, rank, world_size, seed)
        self.worker: Optional[LearnerWorker] = None

    def get_address(self) -> tuple[str, int]:
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def threads(self) -> int:
        return torch.get_num_threads()

    def setup(self, master_addr: str, master_port: int) -> None:
        cfg, model_path, rank, world_size, seed = self._args
        self.worker = LearnerWorker(cfg, model_path, rank, world_size, master_addr, master_port, seed)

    def train_step(self, batch: TrainBatch, global_num_tokens: float, global_num_seqs: float):
        return self.worker.train_step(batch, global_num_tokens, global_num_seqs)

    def compute_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        return self.worker.compute_logprobs(batch)

    def set_loss(self, loss: PolicyLossConfig) -> None:
        self.worker.set_loss(loss)

    def save_checkpoint(self, directory: str, tag: str) -> None:
        self.worker.save_checkpoint(directory, tag)

    def load_checkpoint(self, directory: str, tag: str) -> None:
        self.worker.load_checkpoint(directory, tag)

    def save_hf(self, directory: str) -> None:
        self.worker.save_hf(directory)

    def param_stats(self) -> dict[str, float]:
        return self.worker.param_stats()

    def named_parameters_cpu(self) -> dict[str, torch.Tensor]:
        return self.worker.named_parameters_cpu()

    def weight_plan(self) -> weights.Plan:
        return self.worker.weight_plan()

    def init_weight_group(self, master_addr: str, master_port: int, world_size: int) -> None:
        self.worker.init_weight_group(master_addr, master_port, world_size)

    def broadcast_weights(self) -> dict[str, float]:
        return self.worker.broadcast_weights()

    def export_weights_refs(self) -> dict:
        return self.worker.export_weights_refs()
