"""How the rollout and learner roles share a node's cores: the resource layout, resolved visibly.

- split: each role computes on its own bundle's CPUs/GPUs (Ray's default: OMP threads = the bundle's
  CPU count). Roles can work at the same time, so this is the layout of async mode and of any run
  whose roles sit on different nodes.
- colocated: the roles take turns (sync mode), so each phase may use every core of the node: both
  roles get `node_cpus` intra-op threads while keeping their logical Ray bundles. On GPUs this layout
  would need vLLM sleep/wake to hand the memory to the learner; that path is not built (a config
  rule rejects it).

`auto` picks colocated for a sync CPU job on a private one-node Ray, split otherwise: when the job
joins a cluster by address, or when the Ray it is connected to has more than one alive node (a caller
may have joined a cluster with ray.init before the trainer, which then sees no address), the roles may
sit on other nodes than the driver, whose core count is the only one known here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass(frozen=True)
class Layout:
    name: Literal["colocated", "split"]
    rollout_threads: Optional[int]
    """OMP threads per rollout actor; None = Ray's default (the bundle's CPU count)."""
    learner_threads: Optional[int]
    """OMP threads per learner rank; None = Ray's default."""


def resolve_layout(layout: str, mode: str, on_gpu: bool, joins_cluster: bool, node_cpus: int,
                   alive_nodes: int = 1) -> Layout:
    """`layout` (auto|colocated|split) of a job in `mode` (sync|async) -> the thread counts to apply.

    on_gpu: any role has GPUs; joins_cluster: the job joins an existing Ray cluster by address (shared,
    and it may add nodes later); node_cpus: the driver node's cores; alive_nodes: how many nodes the
    connected Ray has alive (the `ray.nodes()` entries with "Alive" true, counted by the caller after
    connecting; the default 1 is a private local Ray). More than one -> roles may sit on other nodes
    than the driver, so `auto` picks split.
    """
    if alive_nodes < 1:
        raise ValueError(f"alive_nodes={alive_nodes}: a connected Ray has at least the driver's node alive")
    if layout == "auto":
        one_node = not joins_cluster and alive_nodes == 1
        layout = "colocated" if mode == "sync" and not on_gpu and one_node else "split"
    if layout == "colocated":
        if mode != "sync":
            raise ValueError("trainer.layout='colocated' needs trainer.mode='sync' (in async mode the roles "
                             "work at the same time and would fight over the cores)")
        return Layout("colocated", node_cpus, node_cpus)
    if layout == "split":
        return Layout("split", None, None)
    raise ValueError(f"unknown trainer.layout {layout!r}")
