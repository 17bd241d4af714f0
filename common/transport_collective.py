"""The collective weight transport: a broadcast group of learner rank 0 and every engine worker.

`create_weight_group` makes a standalone process group (rank 0 = learner rank 0 hosts the TCPStore,
receivers are ranks 1..world_size-1; gloo on CPU, NCCL on GPU); `timeout_s` bounds the rendezvous and
every broadcast on both ends. `CollectiveSender.send(flats)` broadcasts the buckets in plan order;
`CollectiveReceiver.receive(plan)` yields (name, tensor) as they arrive. It streams: the receivers'
tasks run while the sender sends, and the payload is empty.

Failure path (what issue 23's bounded recovery builds on): a broadcast that raises (a receiver's
process died and its connection closed, or `timeout_s` passed without it) makes `send` raise
`WeightSendFailed` naming the bucket, and closes the sender: a later `send` raises at once, without
waiting on the dead group again. A receiver that is alive but never receives costs the full
`timeout_s` before the broadcast raises; a receiver whose process died costs what the backend takes
to notice the closed connection (gloo: at once).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, ClassVar, Iterable, Iterator, Optional, Sequence

import torch

from forkrl.common.transport import WeightSendFailed
from forkrl.common.weights import Plan, bucket_numel, str_dtype, unpack_bucket


def create_weight_group(master_addr: str, master_port: int, rank: int, world_size: int,
                        backend: str, timeout_s: float):
    """A standalone process group (not torch.distributed's default one, which DeepSpeed and vLLM own).

    Rank 0 hosts the TCPStore. Every rank calls this; it returns once all ranks joined, or raises
    after `timeout_s`, which also bounds each later broadcast (gloo and NCCL alike).
    """
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    # The returned group holds the store (and rank 0's server) alive; nobody else needs a handle.
    store = dist.TCPStore(master_addr, int(master_port), world_size, is_master=(rank == 0),
                          timeout=timeout)
    if backend == "gloo":
        return dist.ProcessGroupGloo(store, rank, world_size, timeout)
    if backend == "nccl":
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout  # the NCCL group's only timeout setting (its default is 10-30 min)
        return dist.ProcessGroupNCCL(store, rank, world_size, opts)
    raise ValueError(f"unknown weight-sync backend {backend!r}")


def _broadcast_from_0(pg, tensor: torch.Tensor) -> None:
    import torch.distributed as dist

    opts = dist.BroadcastOptions()
    opts.rootRank = 0
    opts.rootTensor = 0
    pg.broadcast([tensor], opts).wait()


class CollectiveSender:
    """Rank 0 of the weight group (learner rank 0). Construction blocks until every receiver joined."""

    def __init__(self, master_addr: str, master_port: int, world_size: int, backend: str,
                 timeout_s: float) -> None:
        self.pg = create_weight_group(master_addr, master_port, 0, world_size, backend, timeout_s)
        self.failure: Optional[str] = None  # set by the first failed broadcast: the group is unusable

    def send(self, flats: Iterable[torch.Tensor]) -> tuple[list, int]:
        """Broadcast each bucket's flat tensor, in plan order; returns ([], bytes sent). Raises
        WeightSendFailed when a broadcast fails, and at once on every send after that."""
        if self.failure is not None:
            raise WeightSendFailed(f"the weight group failed earlier ({self.failure}): not sending")
        total = 0
        for index, flat in enumerate(flats):
            try:
                _broadcast_from_0(self.pg, flat)
            except RuntimeError as e:  # gloo's and NCCL's errors (DistBackendError is one)
                self.failure = f"bucket {index}: {str(e).splitlines()[0][:200]}"
                raise WeightSendFailed(f"weight broadcast failed at {self.failure}") from e
            total += flat.numel() * flat.element_size()
        return [], total


class CollectiveReceiver:
    """One receiver rank (1..world_size-1) of the weight group; tensors land on `device`."""

    def __init__(self, master_addr: str, master_port: int, rank: int, world_size: int, backend: str,
                 timeout_s: float, device: torch.device | str = "cpu") -> None:
        self.pg = create_weight_group(master_addr, master_port, rank, world_size, backend, timeout_s)
        self.device = device

    def receive(self, plan: Plan, payload: Sequence = ()) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) of one push, bucket by bucket (one flat in memory at a time; the tensors
        are views of it). Consume it to the end: the sender waits for every bucket's broadcast."""
        if payload:
            raise ValueError(f"the collective transport streams: it takes no payload (got {len(payload)})")
        for bucket in plan:
            flat = torch.empty(bucket_numel(bucket), dtype=str_dtype(bucket[0][1]), device=self.device)
            _broadcast_from_0(self.pg, flat)
            yield from unpack_bucket(flat, bucket)


@dataclass(frozen=True)
class Collective:
    """The group's rendezvous: learner rank 0's TCPStore at host:port, world_size = 1 + receivers."""

    host: str
    port: int
    world_size: int
    backend: str
    timeout_s: float
    name: ClassVar[str] = "collective"
    streams: ClassVar[bool] = True

    @classmethod
    def setup(cls, *, address: Callable[[], tuple[str, int]], receivers: int, backend: str,
              timeout_s: float) -> "Collective":
        host, port = address()
        return cls(host, port, 1 + receivers, backend, timeout_s)

    def sender(self) -> CollectiveSender:
        return CollectiveSender(self.host, self.port, self.world_size, self.backend, self.timeout_s)

    def receiver(self, rank: int, device: torch.device | str) -> CollectiveReceiver:
        return CollectiveReceiver(self.host, self.port, rank, self.world_size, self.backend,
                                  self.timeout_s, device)
