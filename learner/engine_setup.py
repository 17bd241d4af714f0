"""One rank's DeepSpeed engine: the rendezvous, the DeepSpeed config derived from LearnerConfig, the
engine around the HF model, and the one ZeRO-3 detail every reader of full parameters needs.

What it does not do: train (learner.worker), compute log-probs (learner.logprobs) or move weights.
"""
from __future__ import annotations

import contextlib
import math
import os
import socket
from typing import Any, Optional

import torch

from forkrl.learner.config import LearnerConfig


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def init_distributed(rank: int, world_size: int, master_addr: str, master_port: Optional[int],
                     on_gpu: bool) -> None:
    """Join the ranks' default process group (all ranks at once: it returns when every rank joined).

    DeepSpeed reads the rendezvous from the environment (and asserts LOCAL_RANK); each rank is a
    process of its own under Ray, so setting it here touches nothing else."""
    os.environ.update({"MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port or free_port()),
                       "RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "LOCAL_RANK": "0" if not on_gpu else str(torch.cuda.current_device())})
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo",
                               auto_mpi_discovery=False, rank=rank, world_size=world_size)


def build_engine(cfg: LearnerConfig, model_path: str, world_size: int, dtype: torch.dtype,
                 dtype_name: str):
    """The DeepSpeed engine around the HF model at model_path (its `module`). A collective."""
    import deepspeed
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ds_config = deepspeed_config(cfg, world_size, dtype_name, sum(p.numel() for p in model.parameters()))
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=ds_config)
    return engine


def gathered(params, zero_stage: int):
    """Full parameters inside the context (a collective under ZeRO-3, a no-op otherwise)."""
    if zero_stage == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(params), modifier_rank=None)
    return contextlib.nullcontext()
