"""Which Ray node each role runs on, and moving a learner checkpoint between those nodes and the driver.

A DeepSpeed checkpoint is written by every rank into a directory on the rank's own node, and on a
multi-node cluster one node's disk is invisible from another. So the orchestrator gives ranks on the
driver's node the checkpoint path itself and ranks elsewhere a staging directory on their node, then
copies the staged files to the driver through the Ray object store (one file per task), where
orchestrator.checkpoint publishes them atomically and orchestrator.storage uploads them. Loading goes
the other way: every learner node receives the whole checkpoint (DeepSpeed's ZeRO loader reads every
rank's optimizer shard). The relay costs the driver's network bandwidth once per checkpoint; it needs
no shared filesystem.

The `save`/`load` calls are the learner group's own (`LearnerGroup.save_checkpoint`, `load_checkpoint`,
`save_hf`, which take one directory per rank). What it does not do: decide when to save, or publish a
checkpoint (orchestrator.checkpoint does).
"""
from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def bundle_nodes(pg: Any) -> list[str]:
    """Node id (hex) of every bundle of a placement group, in bundle order (= rank / actor index)."""
    table = ray.util.placement_group_table(pg)["bundles_to_node_id"]
    return [table[i] for i in range(len(table))]


def driver_node() -> str:
    return ray.get_runtime_context().get_node_id()


def _on_node(node: str, task, *args):
    """Run a remote function as a task pinned to `node`; returns its ObjectRef."""
    return task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(*args)


# ---- tasks that run on a learner node (zero CPUs: they must not wait behind the ranks' bundles) ----
_task = ray.remote(num_cpus=0, max_retries=0)


@_task
def _make_staging(tag: str) -> str:
    path = Path(tempfile.gettempdir()) / "forkrl_staging" / tag
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


@_task
def _list_files(root: str) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


@_task
def _read_file(path: str) -> bytes:
    return Path(path).read_bytes()


@_task
def _write_file(path: str, data: bytes) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)


@_task
def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ---- driver side -------------------------------------------------------------------------------
def _staging_dirs(nodes: list[str]) -> dict[str, str]:
    """A fresh staging dir on every node in `nodes` other than the driver's."""
    here, tag = driver_node(), uuid.uuid4().hex[:12]
    others = sorted(set(nodes) - {here})
    return dict(zip(others, ray.get([_on_node(n, _make_staging, tag) for n in others])))


def save_on_nodes(nodes: list[str], dest: Path, save: Callable[[list[str]], None]) -> None:
    """`save(directories)` (one directory per rank, in rank order; every rank writes at once: saving is
    a collective), then the files staged on other nodes are copied into `dest` on the driver's node."""
    staged = _staging_dirs(nodes)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        save([staged.get(n, str(dest)) for n in nodes])
        for node, remote_dir in staged.items():
            names = ray.get(_on_node(node, _list_files, remote_dir))
            for name in names:  # one file in flight at a time: bounded driver memory
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).write_bytes(ray.get(_on_node(node, _read_file, f"{remote_dir}/{name}")))
    finally:
        ray.get([_on_node(n, _remove, d) for n, d in staged.items()])


def load_on_nodes(nodes: list[str], src: Path, load: Callable[[list[str]], None]) -> None:
    """Copy the checkpoint dir `src` (on the driver's node) to every other node, then
    `load(directories)` (one directory per rank, in rank order)."""
    staged = _staging_dirs(nodes)
    try:
        files = sorted(p for p in Path(src).rglob("*") if p.is_file())
        for node, remote_dir in staged.items():
            for p in files:
                ray.get(_on_node(node, _write_file, f"{remote_dir}/{p.relative_to(src).as_posix()}",
                                 p.read_bytes()))
        load([staged.get(n, str(src)) for n in nodes])
    finally:
        ray.get([_on_node(n, _remove, d) for n, d in staged.items()])
