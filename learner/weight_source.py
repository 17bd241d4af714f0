"""The learner's end of the weight push: the bucket plan, each bucket's flat tensor, the sender.

Every rank holds one; rank 0 alone sends (over whatever transport the pusher opened:
`common.transport`). Ranks > 0 still walk the buckets on every send, since under ZeRO-3 each
bucket's full parameters are gathered from all ranks.

What it does not do: choose the transport, count versions or fall back (orchestrator.weights).
"""
from __future__ import annotations

import time
from typing import Iterator, Optional

import torch

from forkrl.common import weights
from forkrl.common.transport import Sender, Transport
from forkrl.learner.engine_setup import gathered


class WeightSource:
    def __init__(self, module: torch.nn.Module, rank: int, zero_stage: int, bucket_mb: float,
                 wire_dtype: str, on_gpu: bool) -> None:
        """wire_dtype: learner.weight_sync.wire_dtype ('auto' here: as the parameters are held)."""
        self.module, self.rank, self.zero_stage, self.on_gpu = module, rank, zero_stage, on_gpu
        self.bucket_mb = bucket_mb
        self.wire_dtype = None if wire_dtype == "auto" else weights.str_dtype(wire_dtype)
        self._plan: Optional[weights.Plan] = None
        # By transport name. A replaced sender is dropped only when a link of its kind is opened
        # again: destroying a process group whose peers died is not something to do mid-run.
        self._senders: dict[str, Sender] = {}

    def plan(self) -> weights.Plan:
        """The push's plan (computed once: shapes and names do not change during a run)."""
        if self._plan is None:
            self._plan = weights.bucket_plan(self.module.named_parameters(), self.bucket_mb, self.wire_dtype)
        return self._plan

    def flats(self) -> Iterator[torch.Tensor]:
        """Each bucket's flat tensor in plan order, on the training device, packed while its bucket
        is gathered. Rank 0 yields; ranks > 0 yield nothing but must consume it too, to join
        ZeRO-3's gathers."""
        params = dict(weights.unique_named_tensors(self.module.named_parameters()))
        for bucket in self.plan():
            chosen = [params[name] for name, _, _ in bucket]
            with gathered(chosen, self.zero_stage):
                if self.rank == 0:
                    yield weights.pack_bucket(bucket, {name: params[name] for name, _, _ in bucket})

    def open_sender(self, link: Transport) -> None:
        """Rank 0 builds the sending end of `link` (for a broadcast group: blocks until the receivers
        joined), replacing the one of the same transport. Other ranks keep none."""
        if self.rank == 0:
            self._senders[link.name] = link.sender()

    def send(self, transport: str) -> dict:
        """One push over the `transport` link opened last: {"payload" (what the receivers need, rank
        0's), "bytes", "seconds", "buckets"}; ranks > 0 report an empty payload and zeros. Raises the
        sender's WeightSendFailed."""
        if self.rank != 0:
            for _ in self.flats():
                pass
            return {"payload": [], "bytes": 0, "seconds": 0.0, "buckets": 0}
        if transport not in self._senders:
            raise RuntimeError(f"no {transport!r} weight sender: open_weight_sender() first")
        start = time.perf_counter()
        payload, total = self._senders[transport].send(self.flats())
        if self.on_gpu:
            torch.cuda.synchronize()
        return {"payload": payload, "bytes": total, "seconds": time.perf_counter() - start,
                "buckets": len(self.plan())}
