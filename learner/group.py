"""The learner group: placement of one `LearnerActor` per rank and typed fan-out to them.

It owns the placement group (unless handed one), starts the ranks, slices each train batch before
`ray.put` so a rank receives only its shard, and returns plain results. What it does not do: decide
when to train or push (the orchestrator's loop), or talk to rollout actors directly.
"""
from __future__ import annotations

from typing import Any

from forkrl.learner.config import LearnerConfig
from forkrl.learner.types import TrainBatch


class LearnerGroup:
    def __init__(self, cfg: LearnerConfig, model_path: str, seed: int = 0,
                 placement_group: Any = None, threads: int | None = None) -> None:
        """threads: intra-op threads per rank (OMP_NUM_THREADS in its environment); None leaves Ray's
        default, the bundle's CPU count (the orchestrator's colocated layout gives every core)."""
        import ray
        from ray.util.placement_group import placement_group as make_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from forkrl.learner.worker import LearnerActor

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
    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """Shard by tokens (per global mini-batch), train on every rank, return global metrics."""
        import ray

        shards = batch.shard(self.num_ranks, self.cfg.mini_batches)
        g_tok, g_seq = float(batch.num_loss_tokens), float(batch.num_loss_seqs)
        results = ray.get([a.train_step.remote(ray.put(s), g_tok, g_seq)
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
    def save_checkpoint(self, directory: str, tag: str = "learner") -> None:
        """DeepSpeed checkpoint (model, optimizer, scheduler) of every rank into `directory`."""
        import ray

        ray.get([a.save_checkpoint.remote(str(directory), tag) for a in self.actors])

    def load_checkpoint(self, directory: str, tag: str = "learner") -> None:
        import ray

        ray.get([a.load_checkpoint.remote(str(directory), tag) for a in self.actors])

    def save_hf(self, directory: str) -> None:
        import ray

        ray.get([a.save_hf.remote(str(directory)) for a in self.actors])

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

    # ---- weight push -------------------------------------------------------------------------
    def weight_plan(self) -> list:
        import ray

        return ray.get(self.actors[0].weight_plan.remote())

    def weight_group_address(self) -> tuple[str, int]:
        """(IP of learner rank 0's node, a free port there): where the weight group's TCPStore runs."""
        import ray

        return ray.get(self.actors[0].get_address.remote())

    def init_weight_group(self, master_addr: str, master_port: int, world_size: int):
        """Rank 0 joins the broadcast group as its rank 0. Returns an ObjectRef: it completes only
        when the receivers (ranks 1..world_size-1) join too, so start theirs before ray.get."""
        return self.actors[0].init_weight_group.remote(master_addr, master_port, world_size)

    def broadcast_weights(self) -> list:
        """One ObjectRef per rank, rank 0's first: its {"bytes", "seconds", "buckets"} describe the
        push (the others report zeros). Every rank takes part (under ZeRO-3 they join the per-bucket
        gathers), so the caller must ray.get them ALL: a rank > 0 that failed is seen nowhere else.
        The receivers' tasks must be submitted before waiting, as they complete the broadcast."""
        return [a.broadcast_weights.remote() for a in self.actors]

    def export_weights_refs(self) -> dict:
        """{"plan", "refs" (one ObjectRef per bucket, plan order), "bytes", "seconds", "buckets"}."""
        import ray

        return ray.get([a.export_weights_refs.remote() for a in self.actors])[0]

    def shutdown(self) -> None:
        import ray

        for actor in getattr(self, "actors", []):
            ray.kill(actor)
        self.actors = []
        if self._owns_pg and getattr(self, "placement_group", None) is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.placement_group)
            self.placement_group = None
