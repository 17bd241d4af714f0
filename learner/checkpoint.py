"""What leaves a learner rank as files or full tensors: DeepSpeed checkpoints, the plain HF model,
and parameter fingerprints. Under ZeRO-3 reading full parameters is a collective: call on every rank.

What it does not do: decide where a checkpoint goes on which node (the orchestrator relays the files)
or publish it atomically (orchestrator.checkpoint).
"""
from __future__ import annotations

import math

import torch

from forkrl.common import weights
from forkrl.learner.engine_setup import gathered


def save_checkpoint(engine, directory: str, tag: str, steps: int, generator: torch.Generator) -> None:
    """Model + optimizer + LR scheduler (+ step count, loss RNG) via DeepSpeed. All ranks."""
    engine.save_checkpoint(str(directory), tag=tag, client_state={
        "forkrl_steps": steps, "forkrl_generator": generator.get_state()})


def load_checkpoint(engine, directory: str, tag: str, generator: torch.Generator) -> int:
    """Load what save_checkpoint wrote (the loss RNG into `generator`); returns the step count."""
    path, client = engine.load_checkpoint(str(directory), tag=tag, load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if path is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint {tag!r} under {directory}")
    if "forkrl_generator" in client:
        generator.set_state(client["forkrl_generator"])
    return int(client.get("forkrl_steps", 0))


def save_hf(module: torch.nn.Module, directory: str, model_path: str, rank: int, zero_stage: int) -> None:
    """Plain HF checkpoint (safetensors + config, tokenizer if the source had one) from rank 0."""
    with gathered(module.parameters(), zero_stage):
        if rank == 0:
            module.save_pretrained(str(directory), safe_serialization=True)
            try:
                from transformers import AutoTokenizer

                AutoTokenizer.from_pretrained(model_path).save_pretrained(str(directory))
            except (OSError, ValueError):
                pass  # model dir without a tokenizer (e.g. a bare test model)


def param_stats(module: torch.nn.Module, zero_stage: int) -> dict[str, float]:
    """Parameter count, global L2 norm and plain sum: cheap fingerprints for tests and logs."""
    with gathered(module.parameters(), zero_stage):
        params = [p for _, p in weights.unique_named_tensors(module.named_parameters())]
        sq = sum(float(p.detach().float().pow(2).sum()) for p in params)
        return {"num_params": float(sum(p.numel() for p in params)), "param_norm": math.sqrt(sq),
                "param_sum": sum(float(p.detach().double().sum()) for p in params)}


def named_parameters_cpu(module: torch.nn.Module, zero_stage: int) -> dict[str, torch.Tensor]:
    """Full parameters under HF names, copied to CPU (tests, small models only)."""
    with gathered(module.parameters(), zero_stage):
        return {n: p.detach().cpu().clone()
                for n, p in weights.unique_named_tensors(module.named_parameters())}
