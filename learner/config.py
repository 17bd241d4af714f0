"""The learner's config section: DeepSpeed group shape, optimisation, loss, weight push.

Validators only validate. Deriving values (the DeepSpeed config dict, "auto" dtype) is a separate,
visible step: `resolve_dtype()` and `learner.engine_setup.deepspeed_config()`.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forkrl.learner.loss_config import PolicyLossConfig, PPOClipLoss


class WeightSyncConfig(BaseModel):
    """How the learner pushes new weights to the rollout engines.

    `transport` names one of `common.transports.TRANSPORTS` (a test keeps the two lists equal).
    `backend` and `timeout_s` are the collective's (the object store needs neither) but stay valid
    under any transport: `orchestrator.config` checks `backend` whatever the transport, and a recipe
    switching transports by one override still loads. Hence one flat section, not a tagged union of
    one class per transport; the first transport with options of its own is the time to make it one."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["collective", "object_store"] = Field(
        "collective",
        description="'collective': a broadcast group spanning learner rank 0 and the engines' "
        "workers (gloo on CPU, NCCL on GPU). 'object_store': one ray.put per bucket; receivers "
        "fetch them (no extra process group; slower, simplest). When the collective link cannot "
        "form or a push over it fails, pushes go through the object store for the rest of the run.",
    )
    bucket_mb: float = Field(
        256, gt=0, description="Maximum size of one flat bucket of same-dtype parameters, in MiB."
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="Collective backend; 'auto' = nccl when the learner has GPUs, else gloo."
    )
    timeout_s: float = Field(
        600, gt=0, description="Timeout of the weight group's rendezvous and each broadcast, seconds."
    )
    wire_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="The dtype floating-point parameters travel in. 'auto': the rollout engines' dtype "
        "(the trainer resolves it from rollout.dtype and logs it; a learner used on its own sends its "
        "parameters as it holds them). An engine loads every parameter into its own dtype anyway, so "
        "casting while packing costs nothing extra and halves the bytes of an fp32 learner's push to "
        "bf16 engines. Set 'float32' for a model whose engine keeps some parameters wider than its dtype.",
    )


class LearnerConfig(BaseModel):
    """The DeepSpeed learner group: one Ray actor per rank, torch.distributed inside."""

    model_config = ConfigDict(extra="forbid")

    num_ranks: int = Field(1, ge=1, description="Data-parallel learner ranks (one Ray actor each).")
    gpus_per_rank: float = Field(0, ge=0, description="GPUs per rank; 0 trains on CPU (gloo, fp32).")
    cpus_per_rank: float = Field(1, gt=0, description="CPUs reserved per rank in the placement group.")
    bundle_resources: dict[str, float] = Field(
        default_factory=dict, description="Extra Ray resources per rank bundle, e.g. {forkrl_learner: 1} to pin "
        "ranks to the learner worker type of cluster_configs/ray-cluster.yaml.")
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage (0-3). 2 is the tested default.")
    zero_bucket_size: Union[Literal["auto"], Annotated[int, Field(ge=2, multiple_of=2)]] = Field(
        "auto",
        description="Elements per ZeRO gradient-reduce and all-gather bucket (DeepSpeed's "
        "reduce_bucket_size / allgather_bucket_size). 'auto' sizes them to the model (see "
        "learner.engine_setup.zero_bucket_size): DeepSpeed's default of 5e8 elements keeps a reduce buffer "
        "larger than a small model's whole gradient. 500000000 restores DeepSpeed's default.")
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW (beta1, beta2).")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    warmup_steps: int = Field(
        0, ge=0, description="Linear LR warm-up over this many optimizer steps (0 = constant LR)."
    )
    grad_clip: float = Field(1.0, ge=0, description="Global gradient-norm clip (0 disables).")
    micro_batch_size: int = Field(4, ge=1, description="Sequences per forward/backward on one rank.")
    mini_batches: int = Field(
        1, ge=1, description="Optimizer steps per train batch (the batch is split into this many)."
    )
    epochs: int = Field(1, ge=1, description="Passes over the train batch per train_step.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Training dtype. 'auto' = bfloat16 on GPU, float32 on CPU (bf16 matmuls are "
        "hundreds of times slower than fp32 on CPU).",
    )
    autocast: Literal["none", "bfloat16"] = Field(
        "none",
        description="Mixed precision around the forward (torch.autocast): matmuls in bfloat16, weights, "
        "gradients and Adam state stay in `dtype`; log-softmax and the loss run in float32. On a CPU "
        "with AVX512-BF16 the plain learner's step took 20.6 s against 31.2 s in float32 (64 sequences, "
        "7228 tokens, 2 threads); DeepSpeed's bfloat16 `dtype` (bf16 weights) was slower than float32 "
        "there. Log-probs carry bf16 rounding of the logits.",
    )
    cpu_keep_freed_memory: bool = Field(
        True,
        description="On CPU (glibc), keep freed memory in the learner process's heap instead of "
        "returning it to the system (mallopt: no mmap'd allocations, no trimming). Each step frees and "
        "reallocates the same large temporaries (logits, activations, gradient buckets); returned to the "
        "system, every reallocation faults its pages in again (measured: ~1.7M page faults and ~3 s of "
        "system time per step for SmolLM2-135M, 64 sequences; with this on, none, and the step 1-2 s "
        "faster). The cost: the process's resident memory stays at its peak.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward (less memory, ~30% more compute)."
    )
    packing: bool = Field(
        True, description="Pack each micro-batch into one row without padding and compute each "
        "distinct prompt once (its samples read its keys and values; learner/packing.py). Exact up to "
        "float summation order. Used where the model allows it (sdpa or eager attention, no sliding "
        "window, no gradient checkpointing); elsewhere the padded path runs and the log says why.",
    )
    logprob_chunk_size: int = Field(
        128, ge=1, description="Rows of logits per chunk in the fused log-prob/entropy kernel: each "
        "float32 temporary holds rows x vocab (128 x 49152 = 24 MiB for SmolLM2), and a few live at "
        "once in backward. The kernel sees the loss rows of a whole micro-batch in one flat block."
    )
    recompute_old_logprobs: Literal["auto", "always"] = Field(
        "auto",
        description="'auto': when mini_batches == 1 and epochs == 1 the old policy IS the current "
        "policy before the step, so old log-probs are the detached current log-probs of the same "
        "forward pass (saves one forward); otherwise they are computed in a separate no-grad pass "
        "before the first update. 'always': always use the separate pass. Old log-probs already in "
        "the TrainBatch are used as they are. The sampler's log-probs are never used as old "
        "log-probs: loss.tis corrects the gap between the two policies.",
    )
    mechanism_every: int = Field(
        0, ge=0, description="Every N train steps, measure the entropy mechanism on that step's batch: "
        "one no-grad forward pass before the first optimizer step and one after the last give the "
        "entropy change beside cov(log-prob, advantage) (learner/mechanism.py; train/mechanism_*). "
        "0 = off. Costs two extra forward passes on the steps it runs.")
    ref_model: bool = Field(
        False,
        description="Load a frozen reference copy of the initial model and compute reference "
        "log-probs for KL. Turn on only when the loss config asks for reference KL.",
    )
    loss: PolicyLossConfig = Field(default_factory=PPOClipLoss,
                                  description="Policy loss, a tagged union keyed by 'type' (default PPO-clip).")
    weight_sync: WeightSyncConfig = Field(
        default_factory=WeightSyncConfig, description="Weight push to the rollout engines."
    )

    @model_validator(mode="after")
    def _check(self) -> "LearnerConfig":
        uses_ref = self.loss.uses_reference()
        if uses_ref and not self.ref_model:
            raise ValueError(f"loss (type {self.loss.type!r}) uses reference KL (ref_kl, or SENT's "
                             "penalty='ref_kl'): turn on ref_model so the learner computes reference "
                             "log-probs")
        if self.ref_model and not uses_ref:
            raise ValueError("ref_model is on but loss.ref_kl is not set (nor SENT's penalty='ref_kl'): "
                             "the frozen copy would be loaded for nothing")
        if self.weight_sync.backend == "nccl" and self.gpus_per_rank == 0:
            raise ValueError("weight_sync.backend='nccl' needs gpus_per_rank > 0")
        return self

    def resolve_dtype(self, on_gpu: bool) -> str:
        """'auto' -> 'bfloat16' on GPU, 'float32' on CPU; explicit values pass through."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if on_gpu else "float32"

    def resolve_sync_backend(self) -> str:
        """'auto' -> 'nccl' when the learner has GPUs, else 'gloo'."""
        if self.weight_sync.backend != "auto":
            return self.weight_sync.backend
        return "nccl" if self.gpus_per_rank > 0 else "gloo"
