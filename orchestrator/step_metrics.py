"""What a training step reports: the phase timer, the step's collection record and the metric builders.

Pure functions of what the step produced (its groups, its `Collected` record, the learner's train
result, the phase timer) plus the few numbers they are measured against (the policy version, the
number of rollout actors, the verifier pool's counters). The loops call them; nothing here talks to a
role. Metric names are the run's public interface (metrics.jsonl, TensorBoard, Grafana): keep them.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import numpy as np
import torch

from forkrl.common.episode import Group
from forkrl.orchestrator.samples import verdict_fractions

if TYPE_CHECKING:
    from forkrl.actors.rollout import Generated


class PhaseTimer:
    """Seconds per named phase of one step (a phase entered twice adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class Collected:
    """What one step's collection produced besides the groups it keeps: everything generated (for the
    rollout metrics, dropped groups included) and how long the rollout role was busy for it."""

    seen: list[Group] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0  # wall time of the requests (slowest actor each)
    busy_seconds: float = 0.0  # generation seconds summed over actors
    stale_dropped: int = 0  # groups older than trainer.max_staleness (async mode, stale_groups='drop')
    in_flight: int = 0  # requests in the buffer when training started (async mode)

    def add(self, groups: list[Group], gen: Generated) -> None:
        """Count one generated request."""
        self.seen.extend(groups)
        self.tokens += gen.tokens
        self.seconds += gen.seconds
        self.busy_seconds += gen.busy_seconds


def rollout_metrics(got: Collected, version: int) -> dict[str, float]:
    """Rewards, lengths and throughput of everything the step generated; `version` is the learner's
    before this step's push (staleness of the oldest sample)."""
    episodes = [ep for g in got.seen for ep in g]
    rew = torch.tensor([ep.reward for ep in episodes]) if episodes else torch.zeros(1)
    lens = torch.tensor([float(len(ep.response_ids)) for ep in episodes]) if episodes else torch.zeros(1)
    return {
        "reward/mean": float(rew.mean()), "reward/std": float(rew.std()) if rew.numel() > 1 else 0.0,
        "reward/accuracy": float(np.mean([ep.correct for ep in episodes])) if episodes else 0.0,
        "reward/zero_variance_groups": float(sum(1 for g in got.seen if len({ep.reward for ep in g}) <= 1)),
        "response/length_mean": float(lens.mean()),
        "response/truncated_frac": float(np.mean([ep.truncated for ep in episodes])) if episodes else 0.0,
        "rollout/tokens": float(got.tokens),
        "rollout/tokens_per_s": got.tokens / max(got.seconds, 1e-9),
        "rollout/staleness": float(version - min((ep.weight_version for ep in episodes), default=0)),
        **verdict_fractions(episodes),
    }


def train_metrics(train: Mapping[str, object]) -> dict[str, float]:
    """The learner's numeric results under train/, its entropy as policy/entropy."""
    m = {f"train/{k}": v for k, v in train.items() if isinstance(v, (int, float))}
    if "entropy" in train:
        m["policy/entropy"] = train["entropy"]
    m["train/tokens_per_s"] = train.get("tokens_per_s", float("nan"))
    return m


def staleness_metrics(groups: Sequence[Group], got: Collected, version: int) -> dict[str, float]:
    """Versions between the learner and the trained groups (min/mean/max), groups dropped as too
    old, and the requests left in flight while this step trains (async mode)."""
    m = {"staleness/dropped_groups": float(got.stale_dropped), "buffer/depth": float(got.in_flight)}
    if groups:
        ages = [version - g[0].weight_version for g in groups]
        m.update({"staleness/min": float(min(ages)), "staleness/mean": float(np.mean(ages)),
                  "staleness/max": float(max(ages))})
    return m


def step_metrics(m: dict[str, float], timer: PhaseTimer, wall: float, groups: Sequence[Group], got: Collected,
                 version: int, num_actors: int, learner_restarts: int,
                 pool_stats: Mapping[str, object]) -> dict[str, float]:
    """`m` completed with the step's shape, phase times, each role's busy share and the verifier's
    counters (`pool_stats`, from VerifierPool.stats)."""
    m["step/groups_trained"] = float(len(groups))
    m["step/weight_version"] = float(version)
    m["fault/learner_restarts"] = float(learner_restarts)
    for name, sec in timer.seconds.items():
        m[f"time/{name}"] = sec
    m["time/step"] = wall
    # Fraction of the step's wall time each role computed (async: a request consumed now may have
    # been generated during the previous step, so the rollout's figure is an estimate, capped at 1).
    learner_s = m.get("train/train_seconds", 0.0) + timer.seconds.get("push_weights", 0.0)
    m["role/rollout_busy_frac"] = min(1.0, got.busy_seconds / num_actors / max(wall, 1e-9))
    m["role/learner_busy_frac"] = min(1.0, learner_s / max(wall, 1e-9))
    m["role/verifier_busy_frac"] = min(1.0, timer.seconds.get("verify", 0.0) / max(wall, 1e-9))
    m.update({f"verify/{k}": float(v) for k, v in pool_stats.items() if isinstance(v, (int, float))})
    return m


def eval_metrics(groups: Sequence[Group]) -> dict[str, float]:
    """Greedy held-out accuracy, reward, response length and verdict shares of scored groups."""
    episodes = [ep for g in groups for ep in g]
    return {"eval/accuracy": float(np.mean([ep.correct for ep in episodes])),
            "eval/reward_mean": float(np.mean([ep.reward for ep in episodes])),
            "eval/response_length": float(np.mean([len(ep.response_ids) for ep in episodes])),
            **verdict_fractions(episodes, prefix="eval/verdict/")}


def entropy_law_metrics(history: Sequence[tuple[float, float]]) -> dict[str, float]:
    """Fit R = -a exp(H) + b over the run's (entropy, held-out accuracy) so far (Cui et al.); b - a is
    the predicted ceiling. Empty until the fit has enough points."""
    from forkrl.orchestrator.entropy_law import fit_entropy_law

    fit = fit_entropy_law([h for h, _ in history], [r for _, r in history])
    if not fit:
        return {}
    return {"entropy_law/a": fit["a"], "entropy_law/b": fit["b"], "entropy_law/ceiling": fit["ceiling"],
            "entropy_law/r2": fit["r2"]}


def fmt(m: Mapping[str, float]) -> str:
    """`k=v` pairs for a log line or the progress bar."""
    return " ".join(f"{k}={v:.4g}" for k, v in m.items())
