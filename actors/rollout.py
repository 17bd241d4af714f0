"""Rollout actors: a thin Ray shell around one engine each, plus the group that places and feeds them.

`RolloutWorker` is the plain core (tests drive it without Ray); `RolloutGroup` owns the placement
group, splits a request's prompts across actors and returns a `Generated` record: the Episodes, tagged
with the weight version each engine held when it ran the request, and what they cost. `submit`
returns at once (async mode keeps requests in flight while the learner trains); `collect` waits for
one. Ray runs an actor's tasks in submit order, so a weight load submitted after a request runs after
it: a request never mixes two versions.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import ray
from ray.util.placement_group import PlacementGroup, placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from forkrl.actors.config import RolloutConfig
from forkrl.actors.engines import make_engine
from forkrl.common.episode import Episode
from forkrl.common.transport import Transport
from forkrl.common.weights import Plan


@dataclass
class Generated:
    """What a generation request produced: its Episodes in prompt order and what they cost."""

    episodes: list[Episode]
    seconds: float
    """Wall time of the request: the slowest actor's generation seconds."""
    busy_seconds: float
    """Generation seconds summed over the actors that ran a slice of it."""
    tokens: int
    """Response tokens generated."""


class RolloutWorker:
    def __init__(self, cfg: RolloutConfig, model_path: str, actor_index: int = 0):
        self.cfg = cfg
        self.actor_index = actor_index
        # vLLM's engine-wide seed; every request carries its own sampling seed, which overrides it
        self.engine = make_engine(cfg, model_path, seed=actor_index)
        # Which policy version this engine holds: a fact about its weights, set only by a load. The
        # version counter itself belongs to the orchestrator's WeightPusher.
        self.weight_version = 0

    def ready(self) -> int:
        return self.actor_index

    def threads(self) -> int:
        """Intra-op threads this actor computes with (the layout test reads it)."""
        import torch

        return torch.get_num_threads()

    def generate(self, prompts: Sequence[Sequence[int]], seed: int, n: int | None = None,
                 temperature: float | None = None) -> Generated:
        t0 = time.perf_counter()
        episodes = self.engine.generate(prompts, n or self.cfg.samples_per_prompt, seed, temperature)
        for ep in episodes:
            ep.weight_version = self.weight_version
        dt = time.perf_counter() - t0
        return Generated(episodes, dt, dt, sum(len(e.response_ids) for e in episodes))

    def prompt_logprobs(self, seqs: Sequence[Sequence[int]]) -> list[list[float]]:
        return self.engine.prompt_logprobs(seqs)

    def open_weight_receiver(self, link: Transport, first_rank: int) -> int:
        return self.engine.open_weight_receiver(link, first_rank)

    def receive_weights(self, plan: Plan, version: int, transport: str, *payload) -> dict:
        """Load one push (over the `transport` link opened last) as `version`. The payload arrives as
        separate task arguments, so Ray has fetched any object ref in it onto this node already."""
        t0 = time.perf_counter()
        n = self.engine.receive_weights(transport, plan, list(payload))
        self.weight_version = version
        return {"numel": n, "seconds": time.perf_counter() - t0}

    def get_weight_version(self) -> int:
        return self.weight_version


# Restarted once if it dies; the orchestrator then reloads the current weights through the object store.
RolloutActor = ray.remote(max_restarts=1, max_task_retries=0)(RolloutWorker)


@dataclass
class PendingRequest:
    """A generation request in flight: one ObjectRef per actor that got a slice of the prompts."""

    refs: list
    starts: list[int]  # index of each slice's first prompt in the request


class RolloutGroup:
    """Places `num_actors` engines in their own placement group (independent of the learner's).

    `threads`: intra-op threads per actor (OMP_NUM_THREADS in its environment); None leaves Ray's
    default, the bundle's CPU count. The colocated layout gives each role every core of the node.
    """

    def __init__(self, cfg: RolloutConfig, model_path: str, placement: PlacementGroup | None = None,
                 threads: int | None = None):
        self.cfg = cfg
        bundle = {"CPU": cfg.cpus_per_actor}
        if cfg.gpus_per_actor:
            bundle["GPU"] = cfg.gpus_per_actor
        bundle.update(cfg.bundle_resources)
        self.pg = placement or placement_group([dict(bundle) for _ in range(cfg.num_actors)], strategy="PACK")
        ray.get(self.pg.ready())
        env = {"TOKENIZERS_PARALLELISM": "false"}
        if cfg.tensor_parallel_size == 1:
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        self.actors = [
            RolloutActor.options(
                num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self.pg, placement_group_bundle_index=i,
                    placement_group_capture_child_tasks=True),
                runtime_env={"env_vars": env},
            ).remote(cfg, model_path, i)
            for i in range(cfg.num_actors)
        ]
        ray.get([a.ready.remote() for a in self.actors])

    def wait_restarted(self, timeout_s: float = 600.0) -> None:
        """Block until every actor answers again (Ray restarts a dead one: max_restarts=1)."""
        deadline = time.time() + timeout_s
        for a in self.actors:
            while True:
                try:
                    ray.get(a.ready.remote(), timeout=max(1.0, deadline - time.time()))
                    break
                except ray.exceptions.RayActorError:
                    if time.time() > deadline:
                        raise
                    time.sleep(2)

    @property
    def num_receiver_ranks(self) -> int:
        return self.cfg.num_actors * self.cfg.tensor_parallel_size

    def submit(self, prompts: Sequence[Sequence[int]], seed: int, n: int | None = None,
               temperature: float | None = None) -> PendingRequest:
        """Start generating (contiguous slices of the prompt list per actor); returns at once."""
        k = len(self.actors)
        bounds = [round(i * len(prompts) / k) for i in range(k + 1)]
        refs = [a.generate.remote(prompts[bounds[i]:bounds[i + 1]], seed + 7919 * i, n, temperature)
                for i, a in enumerate(self.actors) if bounds[i + 1] > bounds[i]]
        return PendingRequest(refs, [bounds[i] for i in range(k) if bounds[i + 1] > bounds[i]])

    @staticmethod
    def collect(request: PendingRequest) -> Generated:
        """Wait for a request: the actors' slices joined in prompt order (each slice's prompt_index
        shifted to the request's numbering). A dead actor raises Ray's RayActorError here."""
        parts: list[Generated] = ray.get(request.refs)
        for start, part in zip(request.starts, parts):
            for ep in part.episodes:
                ep.prompt_index += start
        return Generated([ep for part in parts for ep in part.episodes], max((p.seconds for p in parts), default=0.0),
                         sum(p.busy_seconds for p in parts), sum(p.tokens for p in parts))

    def generate(self, prompts: Sequence[Sequence[int]], seed: int, n: int | None = None,
                 temperature: float | None = None) -> Generated:
        """submit + collect: Episodes in prompt order."""
        return self.collect(self.submit(prompts, seed, n, temperature))

    def open_weight_receivers(self, link: Transport) -> list:
        """Every engine worker builds its end of `link` as receiver ranks 1..R (the learner is rank 0).
        Returns the refs: the caller waits with the sender's (a broadcast group forms only with it)."""
        tp = self.cfg.tensor_parallel_size
        return [a.open_weight_receiver.remote(link, 1 + i * tp) for i, a in enumerate(self.actors)]

    def receive_weights_refs(self, plan: Plan, version: int, transport: str, payload: list,
                             actors=None) -> list:
        """Submit one push's receive to every actor (or `actors`) and return their refs without
        waiting: each runs after the actor's tasks submitted before it (its in-flight generation).
        Each actor fetches the payload's object refs itself (task arguments), not the caller."""
        targets = self.actors if actors is None else actors
        return [a.receive_weights.remote(plan, version, transport, *payload) for a in targets]

    def receive_weights(self, plan: Plan, version: int, transport: str, payload: list,
                        actors=None) -> list[dict]:
        return ray.get(self.receive_weights_refs(plan, version, transport, payload, actors))

    def prompt_logprobs(self, seqs: Sequence[Sequence[int]], actor: int = 0) -> list[list[float]]:
        return ray.get(self.actors[actor].prompt_logprobs.remote(seqs))

    def threads(self) -> list[int]:
        return ray.get([a.threads.remote() for a in self.actors])

    def weight_versions(self) -> list[int]:
        return ray.get([a.get_weight_version.remote() for a in self.actors])

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        ray.util.remove_placement_group(self.pg)

