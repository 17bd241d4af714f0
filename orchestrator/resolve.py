"""Resolution: the validated JobConfig with every value that is decided per run made concrete.

Validation (orchestrator.config) only checks; this step derives, in one place, what a run will use
where the recipe said "auto" or left a value to be derived:

- `rollout.dtype` auto -> float32 on CPU engines, bfloat16 on GPU ones (`RolloutConfig.resolved_dtype`);
- `learner.dtype` auto -> float32 on CPU ranks, bfloat16 on GPU ones (`LearnerConfig.resolve_dtype`);
- `learner.weight_sync.backend` auto -> gloo, or nccl when the learner has GPUs;
- `learner.weight_sync.wire_dtype` auto -> the engines' (resolved) dtype, which they load into anyway;
- `trainer.layout` auto -> colocated or split (orchestrator.layout: it needs the cluster's shape,
  so resolution runs after Ray is connected);
- `eval.sample_temperature` null -> `rollout.temperature`.

Left as they are, because they are rules rather than values: `learner.zero_bucket_size` auto (the
learner sizes it to the model's parameter count, which only the loaded model knows) and
`learner.recompute_old_logprobs` auto (a per-batch choice of the learner). `config.resolved.yaml`
is written from the resolved config (`write_resolved`), so it records what ran, and
`resolution_lines` names every value resolution changed, for the log. `resolve_connected` is the
trainer's call (after connecting to Ray): all three, with the cluster's facts.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forkrl.orchestrator.config import JobConfig, dump_config
from forkrl.orchestrator.evaluation import resolve_sample_temperature
from forkrl.orchestrator.layout import Layout, resolve_layout

RESOLVED_FILE = "config.resolved.yaml"
log = logging.getLogger("forkrl")


@dataclass(frozen=True)
class Host:
    """What resolution needs to know about where the job runs."""

    joins_cluster: bool
    """The job joins an existing Ray cluster by address (cluster.address or $RAY_ADDRESS)."""
    node_cpus: int
    """Cores of the driver's node."""
    alive_nodes: int
    """Alive nodes of the connected Ray (1 for a private local Ray)."""


def host_facts(cfg: JobConfig, env: Mapping[str, str], node_cpus: int, alive_nodes: int) -> Host:
    """The Host of a job: the trainer passes os.cpu_count() and the alive entries of `ray.nodes()`
    after connecting; `forkrl config` passes 1 alive node (what a private local Ray has)."""
    return Host(joins_cluster=bool(cfg.cluster.address or env.get("RAY_ADDRESS")), node_cpus=node_cpus,
                alive_nodes=alive_nodes)


@dataclass(frozen=True)
class ResolvedJob:
    config: JobConfig
    """The job config with the values above concrete (validated again, so it is a valid recipe)."""
    layout: Layout
    """The thread counts of `config.trainer.layout` on this host."""


def resolve_job(cfg: JobConfig, host: Host) -> ResolvedJob:
    """The resolved config and layout of a validated job on `host` (pure: no Ray, no files)."""
    engines = cfg.rollout.resolved_dtype()
    learner = cfg.learner
    ws = learner.weight_sync
    layout = resolve_layout(cfg.trainer.layout, cfg.trainer.mode,
                            on_gpu=bool(cfg.rollout.gpus_per_actor or learner.gpus_per_rank),
                            joins_cluster=host.joins_cluster, node_cpus=host.node_cpus,
                            alive_nodes=host.alive_nodes)
    updates = {
        "rollout": {"dtype": engines},
        "learner": {"dtype": learner.resolve_dtype(on_gpu=learner.gpus_per_rank > 0),
                    "weight_sync": {"backend": learner.resolve_sync_backend(),
                                    "wire_dtype": engines if ws.wire_dtype == "auto" else ws.wire_dtype}},
        "trainer": {"layout": layout.name},
        "eval": {"sample_temperature": resolve_sample_temperature(cfg.eval.sample_temperature,
                                                                  cfg.rollout.temperature)},
    }
    tree = _with(cfg.model_dump(mode="json"), updates)
    return ResolvedJob(config=JobConfig.model_validate(tree), layout=layout)


def _with(tree: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(tree)
    for k, v in updates.items():
        out[k] = _with(out[k], v) if isinstance(v, Mapping) else v
    return out


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_leaves(v, f"{prefix}.{k}" if prefix else k))
    return out


def resolution_lines(before: JobConfig, after: JobConfig) -> list[str]:
    """One line per value resolution changed, e.g. 'learner.weight_sync.wire_dtype: auto -> float32'."""
    old, new = _leaves(before.model_dump(mode="json")), _leaves(after.model_dump(mode="json"))
    return [f"{key}: {_show(old.get(key))} -> {_show(value)}" for key, value in new.items()
            if old.get(key) != value]


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


def write_resolved(cfg: JobConfig, run_dir: Path) -> Path:
    """Write the run's config record, `config.resolved.yaml`, from a resolved config."""
    path = Path(run_dir) / RESOLVED_FILE
    path.write_text(dump_config(cfg))
    return path


def resolve_connected(cfg: JobConfig, run_dir: Path) -> ResolvedJob:
    """The trainer's resolution step, after connect_ray: this driver's cores and the connected Ray's
    alive nodes; every changed value logged ('resolved trainer.layout: auto -> colocated'), and
    config.resolved.yaml written from the result."""
    import ray

    host = host_facts(cfg, os.environ, node_cpus=os.cpu_count() or 1,
                      alive_nodes=sum(1 for n in ray.nodes() if n["Alive"]))
    job = resolve_job(cfg, host)
    for line in resolution_lines(cfg, job.config):
        log.info("resolved %s", line)
    write_resolved(job.config, run_dir)
    return job
