"""The object-store weight transport: one `ray.put` per bucket; each engine fetches the list itself.

Needs no rendezvous and no process group, so it is always available: the pusher falls back to it when
another transport fails, and a fresh engine starts with its receiver. The sender runs in a Ray actor
(learner rank 0), which owns the objects it puts; the receivers get the flats themselves as the
payload (the rollout actor passes the refs as task arguments, so Ray fetches them onto its node), and
this module's receiver never touches Ray.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Iterable, Iterator, Sequence

import torch

from forkrl.common.weights import Plan, unpack_flats


class ObjectStoreSender:
    def send(self, flats: Iterable[torch.Tensor]) -> tuple[list, int]:
        """ray.put each flat (copied to CPU); the payload is the list of refs, in plan order."""
        import ray

        refs, total = [], 0
        for flat in flats:
            flat = flat.cpu()
            total += flat.numel() * flat.element_size()
            refs.append(ray.put(flat))
        return refs, total


class ObjectStoreReceiver:
    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = device

    def receive(self, plan: Plan, payload: Sequence) -> Iterator[tuple[str, torch.Tensor]]:
        """The payload is the list of flats (already fetched), one per bucket."""
        return unpack_flats(plan, list(payload), self.device)


@dataclass(frozen=True)
class ObjectStore:
    name: ClassVar[str] = "object_store"
    streams: ClassVar[bool] = False

    @classmethod
    def setup(cls, *, address: Callable[[], tuple[str, int]], receivers: int, backend: str,
              timeout_s: float) -> "ObjectStore":
        return cls()  # nothing to agree on: Ray is the link

    def sender(self) -> ObjectStoreSender:
        return ObjectStoreSender()

    def receiver(self, rank: int, device: torch.device | str) -> ObjectStoreReceiver:
        return ObjectStoreReceiver(device)
