"""The job config: one pydantic tree composing every role's own section, validated before Ray starts.

Each role owns its section (`actors.config`, `learner.config`, `rewards.config`, `orchestrator.data`);
this module adds the orchestrator's own sections and the cross-section rules (impossible
combinations). Validation never derives values: `resolve_*` helpers do that, visibly, elsewhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from actors.config import RolloutConfig
from learner.config import LearnerConfig
from orchestrator.curriculum import CurriculumConfig
from orchestrator.data import ArithmeticData, DataConfig
from rewards.config import RewardConfig


class ConfigError(ValueError):
    """A job config that cannot run; the message names every offending field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    path: str = Field("smollm2-135m", description=(
        "A prepared alias (`forkrl models prepare smollm2-135m`), a local HF model directory, or a hub id."))


class TrainerConfig(_Section):
    steps: int = Field(20, ge=1, description="Training steps (generate -> verify -> advantages -> train -> sync).")
    prompts_per_step: int = Field(8, ge=1, description="Prompts per step; each gets rollout.samples_per_prompt samples.")
    seed: int = Field(0, description="Seeds data order, sampling and the learner.")


class DynamicSamplingConfig(_Section):
    enabled: bool = Field(False, description="Drop groups whose rewards are all equal (DAPO), refill with extra rounds.")
    max_extra_rounds: int = Field(2, ge=0, description="Bound on extra generation rounds spent refilling a step.")


class OverlongConfig(_Section):
    mode: Literal["none", "mask", "penalty"] = Field(
        "none", description="Truncated responses: train as-is, drop from the loss ('mask'), or soft penalty (DAPO).")
    buffer: int = Field(32, ge=1, description="Soft-penalty buffer L_c in tokens (DAPO used 4096 of 20480).")


class AlgorithmConfig(_Section):
    advantage: Literal["grpo", "drgrpo", "rloo"] = Field("grpo", description="Advantage estimator (registry name).")
    dynamic_sampling: DynamicSamplingConfig = Field(default_factory=DynamicSamplingConfig,
                                                    description="DAPO dynamic sampling.")
    overlong: OverlongConfig = Field(default_factory=OverlongConfig, description="Overlong-response handling.")
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig,
                                         description="SENT semantic-entropy curriculum.")


class ClusterConfig(_Section):
    address: Optional[str] = Field(None, description=(
        "Ray address to join; null joins $RAY_ADDRESS when set (ray job submit) else starts a local Ray."))
    num_cpus: Optional[int] = Field(None, ge=1, description=(
        "Logical CPUs of a local Ray; null = enough for every placement bundle (at least os.cpu_count()).")) 
    dashboard: bool = Field(True, description="Start the Ray dashboard (127.0.0.1:8265) with a local Ray.")
    metrics_export_port: Optional[int] = Field(None, ge=1, le=65535, description=(
        "Prometheus port of the local Ray node (forkrl_* gauges appear there as ray_forkrl_*); null = Ray's pick."))
    namespace: str = Field("forkrl", description="Ray namespace of the job's actors.")


class EvalConfig(_Section):
    every_steps: int = Field(5, ge=0, description="Evaluate on the held-out split every K steps (0 = never).")
    at_start: bool = Field(True, description="Evaluate the initial model (step 0) as the baseline.")
    num_prompts: int = Field(64, ge=1, description="Held-out prompts per evaluation (the first N of the eval split).")
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding, so pass@1 is the accuracy.")


class CheckpointConfig(_Section):
    every_steps: int = Field(10, ge=0, description="Checkpoint every K steps (0 = only at the end).")
    keep_last: int = Field(2, ge=1, description="Checkpoints kept; older ones are deleted after a new one lands.")
    save_hf_at_end: bool = Field(True, description="Also export the final policy as a plain HF model dir.")


class LoggingConfig(_Section):
    output_dir: str = Field("runs", description="Runs are written under output_dir/run_name.")
    run_name: Optional[str] = Field(None, description="Defaults to the recipe's file name.")
    progress: bool = Field(True, description="Show a progress bar.")
    plot: bool = Field(True, description="Write reward/entropy curves as PNG at the end (and at each eval).")
    ray_metrics: bool = Field(True, description="Export per-step metrics as ray.util.metrics gauges.")


class JobConfig(_Section):
    """A whole training job. Loaded from YAML + `key.sub=value` overrides; see recipes/."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Policy initialisation.")
    data: DataConfig = Field(default_factory=ArithmeticData, description="Prompt source, tagged by 'type'.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Rollout actors (vLLM).")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="Verifier pool.")
    learner: LearnerConfig = Field(default_factory=LearnerConfig, description="DeepSpeed learner group.")
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig, description="Advantages and sample filters.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="Step budget and batch size.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Ray cluster to run on.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Held-out evaluation.")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, description="Atomic checkpoints.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Metrics, logs and plots.")

    @model_validator(mode="after")
    def _combinations(self) -> "JobConfig":
        problems = []
        g = self.rollout.samples_per_prompt
        if g < 2 and self.algorithm.advantage in ("grpo", "rloo"):
            problems.append(f"rollout.samples_per_prompt={g}: algorithm.advantage="
                            f"{self.algorithm.advantage!r} normalises within a group and needs at least 2")
        if g < 2 and self.algorithm.dynamic_sampling.enabled:
            problems.append("algorithm.dynamic_sampling.enabled needs rollout.samples_per_prompt >= 2")
        if self.rollout.gpus_per_actor and self.rollout.gpus_per_actor != self.rollout.tensor_parallel_size:
            problems.append(f"rollout.gpus_per_actor={self.rollout.gpus_per_actor} must equal "
                            f"rollout.tensor_parallel_size={self.rollout.tensor_parallel_size}")
        if self.rollout.tensor_parallel_size > 1 and not self.rollout.gpus_per_actor:
            problems.append("rollout.tensor_parallel_size > 1 needs GPUs (rollout.gpus_per_actor)")
        if self.rollout.max_new_tokens >= self.rollout.max_model_len:
            problems.append(f"rollout.max_new_tokens={self.rollout.max_new_tokens} leaves no room for the prompt "
                            f"in rollout.max_model_len={self.rollout.max_model_len}")
        if (self.algorithm.overlong.mode == "penalty"
                and self.algorithm.overlong.buffer >= self.rollout.max_new_tokens):
            problems.append(f"algorithm.overlong.buffer={self.algorithm.overlong.buffer} must be < "
                            f"rollout.max_new_tokens={self.rollout.max_new_tokens}")
        if _needs_reference(self.learner.loss) and not self.learner.ref_model:
            problems.append(f"learner.loss (type {self.learner.loss.type!r}) uses reference KL: "
                            "set learner.ref_model=true")
        if getattr(self.learner.loss, "scope", "micro") != "micro":
            problems.append(f"learner.loss.scope={self.learner.loss.scope!r}: only 'micro' (what all three "
                            "reference codes use) is implemented in the learner so far")
        if self.learner.weight_sync.backend == "nccl" and not self.rollout.gpus_per_actor:
            problems.append("learner.weight_sync.backend='nccl' needs GPU rollout actors (rollout.gpus_per_actor)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _needs_reference(loss: Any) -> bool:
    ref = getattr(loss, "ref_kl", None)
    if ref is not None and getattr(ref, "coef", 0) > 0:
        return True
    return getattr(loss, "penalty", None) == "ref_kl"


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    keys = dotted.split(".")
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        node = nxt
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw != "" else "")) 
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid job config ({source}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        lines.append((f"  {loc}: {msg}" if loc else f"  {msg}") + (f" (got {e['input']!r})" if loc and e["type"] not in (
            "missing",) and not isinstance(e.get("input"), dict) else ""))
    return "\n".join(lines)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        # A tagged section that changes its `type` replaces the base's wholesale (its fields differ).
        same_kind = isinstance(v, dict) and isinstance(out.get(k), dict) and v.get("type", out[k].get("type")) \
            == out[k].get("type")
        out[k] = _merge(out[k], v) if same_kind else v
    return out


def _read_recipe(p: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A recipe may name `base: other.yaml` (relative to itself) and override only what differs."""
    if not p.is_file():
        raise ConfigError(f"recipe {p} does not exist")
    if p.resolve() in seen:
        raise ConfigError(f"recipe {p}: 'base' chain loops")
    try:
        tree = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {p} is not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"recipe {p} must be a mapping of sections, got {type(tree).__name__}")
    base = tree.pop("base", None)
    if base is None:
        return tree
    return _merge(_read_recipe(p.parent / str(base), seen + (p.resolve(),)), tree)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> JobConfig:
    """YAML recipe + `key.sub=value` overrides -> a validated JobConfig, or one ConfigError."""
    source = str(path) if path else "<defaults>"
    tree = _read_recipe(Path(path)) if path is not None else {}
    for key, value in parse_overrides(list(overrides or [])):
        _set_path(tree, key, value)
    try:
        return JobConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def dump_config(cfg: JobConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
