"""Start-up of a run: Ray, the run directory, the model's tokenizer, and the roles placed on the cluster.

In the order `Trainer.setup` calls them: `prepare_run_dir` (outputs), `seed_all`, `load_tokenizer`,
`connect_ray` (with the console's routing of the workers' output), then, after
`orchestrator.resolve.resolve_connected` decided every 'auto' and wrote config.resolved.yaml,
`start_roles` (verifier pool, rollout actors, learner group, weight pusher) and `place_learner`
(what `start_roles` and a learner restart share: the learner group and the record of where every
role runs). Nothing here trains or decides when anything happens.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from forkrl.orchestrator.config import JobConfig

if TYPE_CHECKING:
    from forkrl.actors.rollout import RolloutGroup
    from forkrl.learner.group import LearnerGroup
    from forkrl.orchestrator.layout import Layout
    from forkrl.orchestrator.storage import RunStorage
    from forkrl.orchestrator.weights import WeightPusher
    from forkrl.rewards.pool import VerifierPool

log = logging.getLogger("forkrl")


def ray_init_args(cfg: JobConfig, env: Mapping[str, str]) -> dict[str, Any]:
    """The ray.init arguments of a job. `cluster.address` (host:port, or 'auto' for this machine's
    `ray start` cluster) or $RAY_ADDRESS (set by `ray job submit`) joins that cluster and passes no
    resources (Ray refuses them when joining). Otherwise a private local Ray, started explicitly with
    address='local': without it, ray.init() follows Ray's "current cluster" file, which a `ray start`
    cluster - alive, or killed without `ray stop` - leaves behind, and then fails on num_cpus."""
    common: dict[str, Any] = {"namespace": cfg.cluster.namespace,
                              "runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}}
    address = cfg.cluster.address or env.get("RAY_ADDRESS")
    if address:
        return {"address": address, **common}
    need = (cfg.rollout.num_actors * cfg.rollout.cpus_per_actor + cfg.learner.num_ranks * cfg.learner.cpus_per_rank
            + cfg.reward.num_workers * cfg.reward.cpus_per_worker)
    local: dict[str, Any] = {"address": "local", "num_cpus": cfg.cluster.num_cpus or max(os.cpu_count() or 1,
                                                                                          math.ceil(need)),
                             "include_dashboard": cfg.cluster.dashboard, "dashboard_host": "127.0.0.1"}
    if cfg.cluster.metrics_export_port:
        local["_metrics_export_port"] = cfg.cluster.metrics_export_port
    return {**local, **common}


def connect_ray(cfg: JobConfig, run_dir: Path) -> None:
    """Join or start Ray as `ray_init_args` says (nothing when the caller already did), with the
    workers' stdout/stderr routed to the run's roles log unless verbose (orchestrator/console.py)."""
    import ray

    from forkrl.orchestrator import console

    if ray.is_initialized():
        return
    args = console.ray_init_args_with_console(ray_init_args(cfg, os.environ),
                                              console.verbose_requested(cfg.logging.verbose, os.environ),
                                              console.log_files(run_dir)[1])
    ray.init(**args)
    where = "started a private local Ray" if args["address"] == "local" else f"joined Ray at {args['address']}"
    log.info("%s (%s)", where, ray.get_runtime_context().gcs_address)


def prepare_run_dir(storage: RunStorage, resume: bool) -> None:
    """The local run directory, with a resumed run's files pulled from remote storage first. The
    config record is written later, once resolved (orchestrator.resolve.resolve_connected)."""
    storage.local.mkdir(parents=True, exist_ok=True)
    if resume:
        storage.pull_for_resume()


def seed_all(seed: int) -> None:
    """The driver's Python, NumPy and torch generators (checkpoints capture and restore them)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_tokenizer(cfg: JobConfig) -> tuple[str, Any, int]:
    """(local model path, its tokenizer, the pad id: the tokenizer's, else its EOS id). A hub id that
    cannot be fetched fails here in one line."""
    from transformers import AutoTokenizer

    from forkrl.orchestrator.models import check_model_reachable, resolve_model

    model_path = resolve_model(cfg.model.path)
    if not Path(model_path).is_dir():
        check_model_reachable(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return model_path, tokenizer, pad_id


@dataclass
class Roles:
    """The started roles and where they run."""

    pool: VerifierPool
    rollout: RolloutGroup
    learner: LearnerGroup
    pusher: WeightPusher
    placement: dict[str, Any]
    """{"driver": node id, "rollout": [node id per actor], "learner": [node id per rank]}."""


def place_learner(cfg: JobConfig, model_path: str, layout: Layout, rollout: RolloutGroup,
                  run_dir: Path) -> tuple[LearnerGroup, dict[str, Any]]:
    """Start the learner group and record where every role runs (logged, and placement.json)."""
    from forkrl.learner.group import LearnerGroup
    from forkrl.orchestrator.placement import bundle_nodes, driver_node

    learner = LearnerGroup(cfg.learner, model_path, seed=cfg.trainer.seed, threads=layout.learner_threads)
    placement = {"driver": driver_node(), "rollout": bundle_nodes(rollout.pg),
                 "learner": bundle_nodes(learner.placement_group)}
    (run_dir / "placement.json").write_text(json.dumps(placement, indent=1))
    log.info("placement (node ids): driver %s, rollout %s, learner %s", placement["driver"][:8],
             [n[:8] for n in placement["rollout"]], [n[:8] for n in placement["learner"]])
    return learner, placement


def start_roles(cfg: JobConfig, model_path: str, layout: Layout, run_dir: Path) -> Roles:
    """The verifier pool, the rollout actors and the learner group, each in its own placement, and the
    weight pusher between the learner and the engines."""
    from forkrl.actors.rollout import RolloutGroup
    from forkrl.orchestrator.weights import WeightPusher
    from forkrl.rewards.pool import VerifierPool

    log.info("mode %s, layout %s (threads: rollout %s, learner %s); starting %d verifier(s), %d rollout "
             "actor(s), %d learner rank(s)", cfg.trainer.mode, layout.name, layout.rollout_threads or "bundle",
             layout.learner_threads or "bundle", cfg.reward.num_workers, cfg.rollout.num_actors,
             cfg.learner.num_ranks)
    pool = VerifierPool(cfg.reward)
    rollout = RolloutGroup(cfg.rollout, model_path, threads=layout.rollout_threads)
    learner, placement = place_learner(cfg, model_path, layout, rollout, run_dir)
    pusher = WeightPusher(learner, rollout, cfg.learner.weight_sync, cfg.learner.resolve_sync_backend())
    return Roles(pool, rollout, learner, pusher, placement)
