"""The weight push's wire format, written once for learner and engines.

Format. A plan is `list[bucket]`, bucket = `list[(hf_name, dtype_str, shape)]`: same-dtype parameters
(the dtype they travel in: their own, or the wire dtype the plan was made with) under HF `state_dict()`
names, full (unsharded) shapes, each bucket <= bucket_mb (a larger parameter gets a bucket of its own).
Tied weights appear once (the first name, e.g. `model.embed_tokens.weight`, not `lm_head.weight`). The
learner computes the plan once per run; on the wire each bucket is ONE flat contiguous tensor,
`pack_bucket` on the sender (casting to the bucket's dtype), `unpack_bucket` (size- and dtype-checked)
on the receiver.

`unpack_flats(plan, flats)` is the receiving end of a push that hands over the flats themselves. How
the flats travel is a transport's job (`common.transport` names the interface, `common.transports` the
ones there are).

This module imports no forkrl role and no Ray: it runs inside vLLM worker processes too
(`worker_extension_cls`). It does not move tensors, decide when to push, count weight versions, or load
into an engine.
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator, Optional

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


def bucket_plan(named_params: Iterable[tuple[str, torch.Tensor]], bucket_mb: float,
                wire_dtype: Optional[torch.dtype] = None) -> Plan:
    """Group same-dtype parameters, in order, into flat buckets of at most bucket_mb MiB.

    The plan records each parameter's wire dtype: its own, or `wire_dtype` for floating-point
    parameters when given (pack_bucket casts to it). Shapes are the full ones: a ZeRO-3 partitioned
    parameter's `ds_shape` (DeepSpeed's attribute for it) wins over its empty local shape. Tied
    tensors are listed once.
    """
    limit = bucket_mb * 2**20
    plan: Plan = []
    open_buckets: dict[str, tuple[Bucket, list[int]]] = {}  # dtype -> (bucket, [bytes])
    for name, t in unique_named_tensors(named_params):
        shape = tuple(getattr(t, "ds_shape", t.shape))
        wire = wire_dtype if wire_dtype is not None and t.dtype.is_floating_point else t.dtype
        dt = dtype_str(wire)
        nbytes = math.prod(shape) * wire.itemsize
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


def pack_bucket(bucket: Bucket, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """One flat contiguous tensor of the bucket's parameters, in bucket order and its wire dtype."""
    dtype = str_dtype(bucket[0][1])
    return torch.cat([tensors[name].detach().reshape(-1).to(dtype) for name, _, _ in bucket])


def unpack_bucket(flat: torch.Tensor, bucket: Bucket) -> list[tuple[str, torch.Tensor]]:
    """Split a received flat tensor into named, shaped views. A flat of the wrong size or dtype means
    sender and receiver hold different plans: loading it would scramble the weights, so raise."""
    want, dtype = bucket_numel(bucket), str_dtype(bucket[0][1])
    if flat.numel() != want or flat.dtype != dtype:
        raise ValueError(f"bucket of {want} x {dtype} received {flat.numel()} x {flat.dtype} "
                         f"(first parameter {bucket[0][0]})")
    out, offset = [], 0
    for name, _, shape in bucket:
        n = math.prod(shape)
        out.append((name, flat[offset:offset + n].view(shape)))
        offset += n
    return out


def unpack_flats(plan: Plan, flats: list[torch.Tensor], device: torch.device | str = "cpu"
                 ) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every bucket, from the object store's list of flats (plan order)."""
    if len(flats) != len(plan):
        raise ValueError(f"plan has {len(plan)} buckets, received {len(flats)} flats")
    for bucket, flat in zip(plan, flats):
        yield from unpack_bucket(flat.to(device), bucket)
