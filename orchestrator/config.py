"""The job config: one pydantic tree composing every role's own section, validated before Ray starts.

Each role owns its section (`actors.config`, `learner.config`, `rewards.config`, `orchestrator.data`);
this module adds the orchestrator's own sections and the cross-section rules (impossible
combinations). Validation never derives values: `resolve_*` helpers do that, visibly, elsewhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal, Optional

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
    max_restarts: int = Field(2, ge=0, description=(
        "Learner-group restarts after a rank dies: tear the group down, start it again, load the last "
        "checkpoint, re-sync the engines and continue. 0 = a dead rank ends the run."))


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
        "Ray cluster to join: host:port, or 'auto' for this machine's `ray start` cluster. null joins "
        "$RAY_ADDRESS when set (as under `ray job submit`), else starts a private local Ray "
        "(address='local'), which a stale or foreign Ray cluster file cannot redirect."))
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
    output_dir: str = Field("runs", description=(
        "Where run dirs live (output_dir/run_name): a local path or a filesystem URI (s3://, gs://, "
        "file://, ...). Relative paths resolve against the working directory, inside a Ray job "
        "against ~/forkrl (never the job's temporary working dir)."))
    run_name: Optional[str] = Field(None, description="Defaults to the recipe's file name.")
    progress: bool = Field(True, description="Show a progress bar.")
    plot: bool = Field(True, description="Write reward/entropy curves as PNG at the end (and at each eval).")
    ray_metrics: bool = Field(True, description="Export per-step metrics as ray.util.metrics gauges.")
    tensorboard: bool = Field(False, description=(
        "Also write TensorBoard event files to <run dir>/tensorboard (needs the `tensorboard` extra)."))
    wandb_project: Optional[str] = Field(None, description=(
        "Also log to this Weights & Biases project (needs the `wandb` extra); null = off."))
    wandb_mode: Literal["offline", "online"] = Field("offline", description=(
        "'offline' writes <run dir>/wandb/ without network (upload later with `wandb sync`)."))


# ---- combination rules -----------------------------------------------------------------------------
# Every cross-section rule of the job config, each a named function of the whole (already field-valid)
# config returning the problem (naming the offending field) or None. JobConfig's validator runs all of
# them and reports every problem at once; tests/test_config.py builds one minimal violating config per
# entry of COMBINATION_RULES, so a new rule must come with its case there.


def advantage_needs_a_group(cfg: "JobConfig") -> Optional[str]:
    """GRPO and RLOO normalise within a prompt's group: one sample has no baseline."""
    g = cfg.rollout.samples_per_prompt
    if g < 2 and cfg.algorithm.advantage in ("grpo", "rloo"):
        return (f"rollout.samples_per_prompt={g}: algorithm.advantage={cfg.algorithm.advantage!r} "
                "normalises within a group and needs at least 2")
    return None


def dynamic_sampling_needs_a_group(cfg: "JobConfig") -> Optional[str]:
    """Dynamic sampling keeps groups with unequal rewards: a group of one is never kept."""
    if cfg.rollout.samples_per_prompt < 2 and cfg.algorithm.dynamic_sampling.enabled:
        return "algorithm.dynamic_sampling.enabled needs rollout.samples_per_prompt >= 2"
    return None


def gpus_match_tensor_parallel(cfg: "JobConfig") -> Optional[str]:
    """One engine spans exactly its tensor-parallel GPUs."""
    r = cfg.rollout
    if r.gpus_per_actor and r.gpus_per_actor != r.tensor_parallel_size:
        return (f"rollout.gpus_per_actor={r.gpus_per_actor} must equal "
                f"rollout.tensor_parallel_size={r.tensor_parallel_size}")
    return None


def tensor_parallel_needs_gpus(cfg: "JobConfig") -> Optional[str]:
    """vLLM's tensor parallelism is a GPU feature."""
    if cfg.rollout.tensor_parallel_size > 1 and not cfg.rollout.gpus_per_actor:
        return "rollout.tensor_parallel_size > 1 needs GPUs (rollout.gpus_per_actor)"
    return None


def response_fits_model_len(cfg: "JobConfig") -> Optional[str]:
    """The prompt needs room in the engine's context next to the longest response."""
    r = cfg.rollout
    if r.max_new_tokens >= r.max_model_len:
        return (f"rollout.max_new_tokens={r.max_new_tokens} leaves no room for the prompt "
                f"in rollout.max_model_len={r.max_model_len}")
    return None


def overlong_buffer_within_response(cfg: "JobConfig") -> Optional[str]:
    """DAPO's soft penalty starts at max_new_tokens - buffer: it must be a real length."""
    o = cfg.algorithm.overlong
    if o.mode == "penalty" and o.buffer >= cfg.rollout.max_new_tokens:
        return (f"algorithm.overlong.buffer={o.buffer} must be < "
                f"rollout.max_new_tokens={cfg.rollout.max_new_tokens}")
    return None


def reference_kl_needs_ref_model(cfg: "JobConfig") -> Optional[str]:
    """A KL term to the reference (ref_kl, or SENT's penalty='ref_kl') needs its log-probs."""
    if _needs_reference(cfg.learner.loss) and not cfg.learner.ref_model:
        return (f"learner.loss (type {cfg.learner.loss.type!r}) uses reference KL: "
                "set learner.ref_model=true")
    return None


def scope_is_micro(cfg: "JobConfig") -> Optional[str]:
    """Selection scopes other than the micro-batch are not wired into the learner yet."""
    scope = getattr(cfg.learner.loss, "scope", "micro")
    if scope != "micro":
        return (f"learner.loss.scope={scope!r}: only 'micro' (what all three "
                "reference codes use) is implemented in the learner so far")
    return None


def nccl_push_needs_gpu_rollout(cfg: "JobConfig") -> Optional[str]:
    """An NCCL weight broadcast needs a GPU at the receiving end too."""
    if cfg.learner.weight_sync.backend == "nccl" and not cfg.rollout.gpus_per_actor:
        return "learner.weight_sync.backend='nccl' needs GPU rollout actors (rollout.gpus_per_actor)"
    return None


def eval_fits_the_eval_split(cfg: "JobConfig") -> Optional[str]:
    """The trainer evaluates on the first eval.num_prompts held-out rows: asking for more than the
    generator holds out would silently evaluate fewer (file sources are counted only when loaded)."""
    if isinstance(cfg.data, ArithmeticData) and cfg.eval.every_steps and cfg.eval.num_prompts > cfg.data.num_eval:
        return (f"eval.num_prompts={cfg.eval.num_prompts} is more than the {cfg.data.num_eval} held-out "
                "problems of data.num_eval")
    return None


COMBINATION_RULES: tuple[Callable[["JobConfig"], Optional[str]], ...] = (
    advantage_needs_a_group,
    dynamic_sampling_needs_a_group,
    gpus_match_tensor_parallel,
    tensor_parallel_needs_gpus,
    response_fits_model_len,
    overlong_buffer_within_response,
    reference_kl_needs_ref_model,
    scope_is_micro,
    nccl_push_needs_gpu_rollout,
    eval_fits_the_eval_split,
)


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
        problems = [p for rule in COMBINATION_RULES if (p := rule(self)) is not None]
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
