"""The learner group: placement of one `LearnerActor` per rank and every fan-out to them.

It owns the placement group (unless handed one), starts the ranks, slices each train batch before
`ray.put` so a rank receives only its shard, calls every rank for what is a collective (train steps,
log-probs, checkpoints, the HF export, the weight push's learner end), and returns plain results.
What it does not do: decide when to train, save or push (the orchestrator's loop), move checkpoint
files between nodes (orchestrator.placement hands each rank its directory), or talk to rollout
actors directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

from forkrl.common.transport import Transport
from forkrl.learner.config import LearnerConfig
from forkrl.learner.types import TrainBatch


RankDirs = Union[str, Path, Sequence[str]]


def rank_dirs(directory: RankDirs, num_ranks: int) -> list[str]:
    """Each rank's directory: one path for all (one node, or a filesystem every rank shares), or one
    per rank, rank order (on a multi-node cluster the orchestrator hands ranks off its own node a
    staging dir there and relays the files: orchestrator.placement)."""
    if isinstance(directory, (str, Path)):
        return [str(directory)] * num_ranks
    dirs = [str(d) for d in directory]
    if len(dirs) != num_ranks:
        raise ValueError(f"{len(dirs)} checkpoint directories for {num_ranks} learner ranks: give one "
                         "directory for all ranks or one per rank")
    return dirs


class LearnerGroup:
    def __init__(self, cfg: LearnerConfig, model_path: str, seed: int = 0,
                 placement_group: Any = None, threads: int | None = None) -> None:
        """threads: intra-op threads per rank (OMP_NUM_THREADS in its environment); None leaves Ray's
        default, the bundle's CPU count (the orchestrator's colocated layout gives every core)."""
        import ray
        from ray.util.placement_group import placement_group as make_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from forkrl.learner.actor import LearnerActor

        self.cfg, self.num_ranks = cfg, cfg.num_ranks
        self._owns_pg = placement_group is None
        if placement_group is None:
            bundle: dict[str, float] = {"CPU": cfg.cpus_per_rank}
            if cfg.gpus_per_rank > 0:
                bundle["GPU"] = cfg.gpus_per_rank
            bundle.update(cfg.bundle_resources)
            placement_group = make_placement_group([dict(bundle) for _ in range(cfg.num_ranks)],
                                                   strategy="PACK", name="")
            ray.get(placement_group.ready())
        self.placement_group = placement_group
        options: dict[str, Any] = {"num_cpus": cfg.cpus_per_rank, "num_gpus": cfg.gpus_per_rank}
        env: dict[str, str] = {}
        if cfg.gpus_per_rank == 0:
            env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed picks its accelerator at import time: tell it first
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        if env:
            options["runtime_env"] = {"env_vars": env}
        actor_cls = ray.remote(LearnerActor)
        try:
            self.actors = [
                actor_cls.options(**options, scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group, placement_group_bundle_index=rank)).remote(
                        cfg, str(model_path), rank, cfg.num_ranks, seed)
                for rank in range(cfg.num_ranks)
            ]
            addr, port = ray.get(self.actors[0].get_address.remote())
            ray.get([a.setup.remote(addr, port) for a in self.actors])  # joins the DeepSpeed group
        except BaseException:
            self.shutdown()
            raise

    # ---- training ----------------------------------------------------------------------------
    def dead_ranks(self, timeout_s: float = 10.0) -> list[int]:
        """Ranks whose actor is dead (a short ping of each). A rank that does not answer within
        `timeout_s` (stuck in a collective with a dead peer) counts as alive: it dies with the group's
        restart."""
        import ray

        refs = [a.get_address.remote() for a in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        dead = []
        for rank, ref in enumerate(refs):
            if ref in ready:
                try:
                    ray.get(ref)
                except ray.exceptions.RayActorError:
                    dead.append(rank)
        return dead

    def train_step(self, batch: TrainBatch, measure_mechanism: bool = False) -> dict[str, float]:
        """Shard by tokens (per global mini-batch), train on every rank, return global metrics
        (`measure_mechanism`: LearnerWorker.train_step's entropy-mechanism passes, on every rank)."""
        import ray

        shards = batch.shard(self.num_ranks, self.cfg.mini_batches)
        g_tok, g_seq = float(batch.num_loss_tokens), float(batch.num_loss_seqs)
        results = ray.get([a.train_step.remote(ray.put(s), g_tok, g_seq, measure_mechanism)
                           for a, s in zip(self.actors, shards)])
        # Every rank returns the same all-reduced metrics except its own wall time: take the slowest.
        out = dict(results[0])
        out["train_seconds"] = max(r["train_seconds"] for r in results)
        out["tokens_per_s"] = out["train_tokens"] / max(out["train_seconds"], 1e-9)
        return out

    def compute_logprobs(self, batch: TrainBatch):
        """Current-policy log-probs [B, L] of the batch (sharded over ranks, reassembled in order)."""
        import ray
        import torch

        rows = batch.shard_rows(self.num_ranks)
        parts = ray.get([a.compute_logprobs.remote(ray.put(batch.select(r))) for a, r in
                         zip(self.actors, rows)])
        out = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
        for r, lp in zip(rows, parts):
            if r:
                out[torch.tensor(r)] = lp
        return out

    # ---- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, directory: RankDirs, tag: str = "learner") -> None:
        """DeepSpeed checkpoint (model, optimizer, scheduler, step count, loss RNG) of every rank, all
        at once (saving is a collective). `directory`: see `rank_dirs`."""
        import ray

        dirs = rank_dirs(directory, self.num_ranks)
        ray.get([a.save_checkpoint.remote(d, tag) for a, d in zip(self.actors, dirs)])

    def load_checkpoint(self, directory: RankDirs, tag: str = "learner") -> None:
        """Every rank loads `tag`. Each rank's directory must hold the WHOLE checkpoint (DeepSpeed's
        ZeRO loader reads every rank's optimizer shard), not only what that rank saved."""
        import ray

        dirs = rank_dirs(directory, self.num_ranks)
        ray.get([a.load_checkpoint.remote(d, tag) for a, d in zip(self.actors, dirs)])

    def save_hf(self, directory: RankDirs) -> None:
        """Plain HF model dir, written by rank 0 (into its directory); every rank takes part, as under
        ZeRO-3 the full parameters are gathered from all of them."""
        import ray

        dirs = rank_dirs(directory, self.num_ranks)
        ray.get([a.save_hf.remote(d) for a, d in zip(self.actors, dirs)])

    def threads(self) -> list[int]:
        """Intra-op threads of every rank (the layout test reads them)."""
        import ray

        return ray.get([a.threads.remote() for a in self.actors])

    def set_loss(self, loss_cfg) -> None:
        """Every rank trains with `loss_cfg` from the next step on (the entropy set-point controller
        moves one coefficient per step)."""
        import ray

        ray.get([a.set_loss.remote(loss_cfg) for a in self.actors])

    def param_stats(self) -> dict[str, float]:
        import ray

        return ray.get([a.param_stats.remote() for a in self.actors])[0]

    # ---- weight push (the transport is the pusher's choice: common.transport) ----------------
    def weight_plan(self) -> list:
        import ray

        return ray.get(self.actors[0].weight_plan.remote())

    def sender_address(self) -> tuple[str, int]:
        """(IP of learner rank 0's node, a free port there): where a link's rendezvous can listen."""
        import ray

        return ray.get(self.actors[0].get_address.remote())

    def open_weight_sender(self, link: Transport):
        """Rank 0 builds the sending end of `link`. Returns its ObjectRef: for a broadcast group it
        completes only when the receivers join too, so start theirs before ray.get."""
        return self.actors[0].open_weight_sender.remote(link)

    def send_weights(self, transport: str) -> list:
        """Send over the `transport` link opened last (`open_weight_sender`).
        One ObjectRef per rank, rank 0's first: its {"payload", "bytes", "seconds", "buckets"}
        describe the push (the others report zeros). Every rank takes part (under ZeRO-3 they join
        the per-bucket gathers), so the caller must ray.get them ALL: a rank > 0 that failed is seen
        nowhere else. For a streaming link the receivers' tasks must be submitted before waiting."""
        return [a.send_weights.remote(transport) for a in self.actors]

    def shutdown(self) -> None:
        import ray

        for actor in getattr(self, "actors", []):
            ray.kill(actor)
        self.actors = []
        if self._owns_pg and getattr(self, "placement_group", None) is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.placement_group)
            self.placement_group = None
