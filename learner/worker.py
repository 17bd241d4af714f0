"""One learner rank: an HF causal LM inside a DeepSpeed engine, trained with a registered policy loss.

`LearnerWorker` is a plain class (a test drives it with world_size 1, no Ray); `learner.actor.LearnerActor`
is the thin Ray wrapper that `learner.group.LearnerGroup` places, one per rank. The worker is the train
step; its parts live beside it: the DeepSpeed engine (learner.engine_setup), the forward passes over
micro-batches (learner.logprobs), the step's metrics (learner.train_metrics), checkpoints and the HF
export (learner.checkpoint), the weight push's learner end (learner.weight_source) and the CPU
allocator setting (learner.cpu_memory).

Loss normalisation (why the gradient does not depend on sharding): for each optimizer step (one
mini-batch) the global token/sequence counts of that mini-batch over all ranks are all-reduced first
and handed to the loss as `global_num_tokens` / `global_num_seqs`, so the loss of one micro-batch is
its share of the global loss (sum over micro-batches and ranks = the global token-mean / seq-mean).
Gradients are accumulated as sums (`backward(scale_wrt_gas=False)` with DeepSpeed's caller-managed
accumulation), and since DeepSpeed averages gradients over the data-parallel ranks, each rank
multiplies its loss by world_size. Every rank runs the same number of micro-batches per step (ZeRO
reduces gradients inside each backward): a rank with fewer sequences runs zero-loss dummy passes.

What this module does not do: pick the loss (learner.losses), compute advantages, or know about
rollout engines beyond sending weights over the link it is given (common.transport).
"""
from __future__ import annotations

import time
from typing import Iterator, Optional

import torch
from pydantic import TypeAdapter

from forkrl.common import weights
from forkrl.common.transport import Transport
from forkrl.learner import checkpoint
from forkrl.learner.config import LearnerConfig
from forkrl.learner.cpu_memory import keep_freed_memory
from forkrl.learner.engine_setup import build_engine, init_distributed
from forkrl.learner.logprobs import TokenForward, all_reduce
from forkrl.learner.loss_config import PolicyLossConfig
from forkrl.learner.losses import LossInputs, compute_policy_loss
from forkrl.learner.mechanism import mechanism_metrics, mechanism_sums
from forkrl.learner.packing import packing_supported
from forkrl.learner.train_metrics import SHARE_METRICS, StepMetrics, add_token_metrics
from forkrl.learner.types import TrainBatch
from forkrl.learner.weight_source import WeightSource


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
        if not self.on_gpu and cfg.cpu_keep_freed_memory:
            keep_freed_memory()

        init_distributed(rank, world_size, master_addr, master_port, self.on_gpu)
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed * 1009 + rank)
        self.engine = build_engine(cfg, self.model_path, world_size, self.dtype, self.dtype_name)
        self.fwd = TokenForward(self.engine, self.device, self.dtype, world_size, cfg.micro_batch_size,
                                cfg.logprob_chunk_size, cfg.autocast)
        why_not = "off in the config" if not cfg.packing else (
            "gradient checkpointing drops the prefix's KV cache" if cfg.gradient_checkpointing
            else packing_supported(self.engine.module.config) or self.fwd.packing_self_check())
        self.fwd.packing = not why_not
        if rank == 0:
            print(f"[learner] packed forward: {'on' if self.packing else 'off (' + why_not + ')'}", flush=True)
        self.ref = None
        if cfg.ref_model:
            from transformers import AutoModelForCausalLM

            self.ref = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype)
            self.ref.to(self.device).eval().requires_grad_(False)
        ws = cfg.weight_sync
        self.weights = WeightSource(self.engine.module, rank, cfg.zero_stage, ws.bucket_mb, ws.wire_dtype,
                                    self.on_gpu)

    @property
    def packing(self) -> bool:
        """Whether the loss positions run packed (decided once at start-up, see learner.packing)."""
        return self.fwd.packing

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
                   global_num_seqs: Optional[float] = None, measure_mechanism: bool = False) -> dict[str, float]:
        """One train batch: epochs x mini_batches optimizer steps. Metrics are global (all ranks).

        `global_num_tokens` / `global_num_seqs` (the whole batch over all ranks), when given, are
        checked against the all-reduced counts; the per-mini-batch counts are always all-reduced.
        `measure_mechanism`: one no-grad pass over the batch before the first optimizer step and one
        after the last give the step's entropy change beside cov(lp, A) (learner/mechanism.py),
        reported as `mechanism_*` (a collective: the same flag on every rank).
        """
        cfg, start = self.cfg, time.perf_counter()
        if batch.old_logprobs is None and (cfg.recompute_old_logprobs == "always"
                                           or cfg.mini_batches > 1 or cfg.epochs > 1):
            batch.old_logprobs = self.fwd.policy_logprobs(batch, positions="loss")
        if self.ref is not None and batch.ref_logprobs is None:
            batch.ref_logprobs = self.compute_ref_logprobs(batch)

        parts = batch.split(cfg.mini_batches)
        local = torch.tensor([[p.num_loss_tokens, p.num_loss_seqs, p.num_tokens] for p in parts],
                             dtype=torch.float64)
        counts = all_reduce(local, self.world_size, self.device)
        if global_num_tokens is not None and abs(counts[:, 0].sum().item() - global_num_tokens) > 0.5:
            raise ValueError(f"global_num_tokens={global_num_tokens} but the ranks hold "
                             f"{counts[:, 0].sum().item():.0f} loss tokens")
        if global_num_seqs is not None and abs(counts[:, 1].sum().item() - global_num_seqs) > 0.5:
            raise ValueError(f"global_num_seqs={global_num_seqs} but the ranks hold "
                             f"{counts[:, 1].sum().item():.0f} sequences with loss tokens")
        n_micro = self.fwd.max_micro_count(parts)
        entropy_grad = cfg.loss.needs_entropy_grad()

        before = self.fwd.policy_logprobs_and_entropy(batch, "loss") if measure_mechanism else None
        self.engine.train()
        metrics = StepMetrics()
        for _ in range(cfg.epochs):
            for k, part in enumerate(parts):
                if counts[k, 0].item() == 0:  # no loss token on any rank: no step (same on all ranks)
                    continue
                g_tok, g_seq = counts[k, 0].item(), counts[k, 1].item()
                for mb, real in self.fwd.micro_batches(part, n_micro[k], batch):
                    lp, ent = self.fwd.forward(self.engine, mb, grad=True, entropy_grad=entropy_grad)
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
                    add_token_metrics(metrics, mb, lp.detach(), ent.detach(), old, ref, mask)
                    for name, value in loss_metrics.items():
                        if name in SHARE_METRICS:
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
        if before is not None:
            _, entropy_after = self.fwd.policy_logprobs_and_entropy(batch, "loss")
            sums = mechanism_sums(before[1], entropy_after, before[0], batch.advantages, batch.loss_mask)
            out.update(mechanism_metrics(all_reduce(sums, self.world_size, self.device)))
        seconds = time.perf_counter() - start
        train_tokens = float(counts[:, 2].sum()) * cfg.epochs
        out.update(train_tokens=train_tokens, train_loss_tokens=float(counts[:, 0].sum()),
                   train_seqs=float(counts[:, 1].sum()), train_seconds=seconds,
                   tokens_per_s=train_tokens / max(seconds, 1e-9),
                   lr=float(self.engine.get_lr()[0]), optimizer_steps=float(self.steps))
        return out

    # ---- log-probs ---------------------------------------------------------------------------
    def compute_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """Current-policy log-probs [B, L] of every real token, prompt included (0 at position 0 and
        on padding); no grad. A collective under ZeRO-3: call on all ranks."""
        return self.fwd.policy_logprobs(batch, positions="real")

    def compute_ref_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """Reference-model log-probs [B, L] of the loss tokens (all the KL term reads), 0 elsewhere."""
        if self.ref is None:
            raise RuntimeError("ref_model is off in the learner config")
        return self.fwd.logprobs_of(self.ref, batch, collective=False, positions="loss")

    # ---- checkpoints and parameters (learner.checkpoint; all ranks) --------------------------
    def save_checkpoint(self, directory: str, tag: str) -> None:
        checkpoint.save_checkpoint(self.engine, directory, tag, self.steps, self.generator)

    def load_checkpoint(self, directory: str, tag: str) -> None:
        self.steps = checkpoint.load_checkpoint(self.engine, directory, tag, self.generator)

    def save_hf(self, directory: str) -> None:
        checkpoint.save_hf(self.engine.module, directory, self.model_path, self.rank, self.cfg.zero_stage)

    def param_stats(self) -> dict[str, float]:
        return checkpoint.param_stats(self.engine.module, self.cfg.zero_stage)

    def named_parameters_cpu(self) -> dict[str, torch.Tensor]:
        return checkpoint.named_parameters_cpu(self.engine.module, self.cfg.zero_stage)

    # ---- weight push (learner.weight_source; every rank sends, rank 0 alone has a sender) ----
    def weight_plan(self) -> weights.Plan:
        return self.weights.plan()

    def weight_flats(self) -> Iterator[torch.Tensor]:
        return self.weights.flats()

    def open_weight_sender(self, link: Transport) -> None:
        self.weights.open_sender(link)

    def send_weights(self, transport: str) -> dict:
        return self.weights.send(transport)
