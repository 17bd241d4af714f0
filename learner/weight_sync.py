"""Weight push from learner rank 0 to the rollout engines, sender side (plus a reference receiver).

Protocol (the rollout actor's receiver must follow it exactly; roles do not import each other, so the
receiver half is copied there):
  * A plan is `list[bucket]`, bucket = `list[(hf_name, dtype_str, shape)]`: same-dtype parameters in
    HF `state_dict()` naming, full (unsharded) tensors, each bucket <= bucket_mb (a parameter larger
    than that gets a bucket of its own). Tied weights appear once (the first name, e.g.
    `model.embed_tokens.weight`, not `lm_head.weight`). The plan is fixed for a run.
  * Transport "collective": learner rank 0 is rank 0 of a SEPARATE process group (TCPStore at
    master_addr:master_port + ProcessGroupGloo / ProcessGroupNCCL), receivers are ranks
    1..world_size-1. The default DeepSpeed group is untouched. Per push, for each bucket in plan order,
    rank 0 broadcasts one flat contiguous tensor = torch.cat([p.flatten() for p in bucket]); each
    receiver allocates `flat = torch.empty(sum(numel), dtype)`, receives, and splits with
    `unpack_bucket`.
  * Transport "object_store": one `ray.put(flat)` per bucket, in plan order; the learner returns
    {"plan", "refs", "bytes", "seconds", "buckets"} (plain types) and receivers `unpack_bucket`.

What this module does not do: decide when to push, bump weight versions, or load into vLLM.
"""
from __future__ import annotations

import math
from datetime import timedelta
from typing import Iterable, Sequence

import torch

PlanEntry = tuple[str, str, tuple[int, ...]]
Bucket = list[PlanEntry]
Plan = list[Bucket]


def dtype_str(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def str_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def hf_name(name: str) -> str:
    """DeepSpeed/DDP wrappers prefix parameter names with `module.`; HF names do not have it."""
    while name.startswith("module."):
        name = name[len("module."):]
    return name


def unique_named_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """HF names, skipping tensors that share storage with an earlier one (tied weights)."""
    seen: set[tuple[int, int]] = set()
    out = []
    for name, t in named:
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        if key in seen:
            continue
        seen.add(key)
        out.append((hf_name(name), t))
    return out


def bucket_plan(named_params: Iterable[tuple[str, torch.Tensor]], bucket_mb: float) -> Plan:
    """Group same-dtype parameters, in order, into flat buckets of at most bucket_mb MiB.

    `named_params` must yield full (unsharded) tensors or at least tensors with the full shape
    (`ds_shape` is honoured for ZeRO-3 partitioned parameters). Tied tensors are listed once.
    """
    limit = bucket_mb * 2**20
    plan: Plan = []
    open_buckets: dict[str, tuple[Bucket, list[int]]] = {}  # dtype -> (bucket, [bytes])
    for name, t in unique_named_tensors(named_params):
        shape = tuple(getattr(t, "ds_shape", t.shape))
        dt = dtype_str(t.dtype)
        nbytes = math.prod(shape) * t.element_size()
        current = open_buckets.get(dt)
        if current is not None and current[1][0] + nbytes > limit:
            current = None
        if current is None:
            current = ([], [0])
            plan.append(current[0])
            open_buckets[dt] = current
        current[0].append((name, dt, shape))
        current[1][0] += nbytes
    return plan


def bucket_numel(bucket: Bucket) -> int:
    return sum(math.prod(shape) for _, _, shape in bucket)


def bucket_nbytes(bucket: Bucket) -> int:
    return bucket_numel(bucket) * str_dtype(bucket[0][1]).itemsize if bucket else 0


def pack_bucket(bucket: Bucket, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """One flat contiguous tensor of the bucket's parameters, in bucket order."""
    return torch.cat([tensors[name].detach().reshape(-1) for name, _, _ in bucket])


def unpack_bucket(flat: torch.Tensor, bucket: Bucket) -> list[tuple[str, torch.Tensor]]:
    """Split a received flat tensor back into named, shaped tensors (views of `flat`)."""
    out, offset = [], 0
    for name, _, shape in bucket:
        n = math.prod(shape)
        out.append((name, flat[offset:offset + n].view(shape)))
        offset += n
    if offset != flat.numel():
        raise ValueError(f"bucket expects {offset} elements, got {flat.numel()}")
    return out


# ---- collective transport -----------------------------------------------------------------------
def create_weight_group(master_addr: str, master_port: int, rank: int, world_size: int,
                        backend: str = "gloo", timeout_s: float = 600.0):
    """A standalone process group (not registered with torch.distributed's default world).

    Rank 0 hosts the TCPStore. Both sides call this; it returns once all ranks joined.
    """
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    store = dist.TCPStore(master_addr, int(master_port), world_size, is_master=(rank == 0),
                          timeout=timeout)
    if backend == "gloo":
        pg = dist.ProcessGroupGloo(store, rank, world_size, timeout)
    elif backend == "nccl":
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout
        pg = dist.ProcessGroupNCCL(store, rank, world_size, opts)
    else:
        raise ValueError(f"unknown weight-sync backend {backend!r}")
    return pg  # the group holds a reference to the store (and rank 0's server) in C++


def broadcast_flat(pg, tensor: torch.Tensor) -> None:
    """Broadcast `tensor` in place from rank 0 of `pg`."""
    import torch.distributed as dist

    opts = dist.BroadcastOptions()
    opts.rootRank = 0
    opts.rootTensor = 0
    pg.broadcast([tensor], opts).wait()


def receive_bucket(pg, plan_bucket: Bucket, device: torch.device | str = "cpu"
                   ) -> list[tuple[str, torch.Tensor]]:
    """Receiver (reference implementation): receive one bucket's broadcast and split it."""
    flat = torch.empty(bucket_numel(plan_bucket), dtype=str_dtype(plan_bucket[0][1]), device=device)
    broadcast_flat(pg, flat)
    return unpack_bucket(flat, plan_bucket)


def receive_push(master_addr: str, master_port: int, rank: int, world_size: int, plan: Plan,
                 backend: str = "gloo", timeout_s: float = 600.0) -> dict[str, torch.Tensor]:
    """Reference receiver for tests: join the weight group and receive one full push."""
    pg = create_weight_group(master_addr, master_port, rank, world_size, backend, timeout_s)
    return {name: t.clone() for bucket in plan for name, t in receive_bucket(pg, bucket)}


def check_plan_covers(plan: Plan, names: Sequence[str]) -> None:
    """Raise unless every name appears exactly once in the plan."""
    planned = [n for b in plan for n, _, _ in b]
    if sorted(planned) != sorted(names) or len(set(planned)) != len(planned):
        raise ValueError("weight plan does not cover the parameters exactly once")
