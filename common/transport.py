"""The weight transport's interface: how the flats of one push travel from learner rank 0 to the engines.

A transport is a small picklable description of one link (`Transport`), made by the orchestrator's
`WeightPusher` with `setup()` and shipped to both ends: learner rank 0 builds its `Sender` from it, every
engine worker its `Receiver` (ranks 1..R: the sender is rank 0). A push is then `Sender.send(flats)` on
the learner, which returns a payload (a list, empty when nothing needs handing over) and the bytes sent,
and `Receiver.receive(plan, payload)` in each engine worker, which yields (name, tensor) in plan order.

Two kinds of flow, told apart by `streams`:
  * streaming (`streams = True`, e.g. a broadcast group): sender and receivers take part in the same
    transfer, so the pusher submits the receivers' tasks together with the sender's and the payload
    is empty;
  * handing over (`streams = False`, e.g. the object store): the sender finishes first and returns a
    payload (object refs, IPC handles, ...) that the pusher then gives every receiver.

A new transport (CUDA IPC, vLLM's weight-transfer API) is one module with its `Transport`, `Sender` and
`Receiver`, plus its line in `common.transports.TRANSPORTS` and its name in
`learner.config.WeightSyncConfig.transport`. The wire format (plan, flats) is `common.weights`.

Failure: a sender that cannot complete a send raises `WeightSendFailed` and is closed by it: every
later send raises at once instead of waiting for its peers again. The pusher then falls back to the
object store. This module imports no forkrl role and no Ray (receivers run inside vLLM workers).
"""
from __future__ import annotations

from typing import Callable, ClassVar, Iterable, Iterator, Protocol, Sequence

import torch

from forkrl.common.weights import Plan


class WeightSendFailed(RuntimeError):
    """A send did not reach every receiver (one died, or did not answer within the transport's
    timeout). The sender that raised it is closed: open a new link to push again."""


class Sender(Protocol):
    def send(self, flats: Iterable[torch.Tensor]) -> tuple[list, int]:
        """Send each bucket's flat tensor, in plan order; returns (payload for the receivers, bytes)."""
        ...


class Receiver(Protocol):
    def receive(self, plan: Plan, payload: Sequence) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) of one push in plan order. Consume it to the end (a streaming sender waits
        for every bucket)."""
        ...


class Transport(Protocol):
    """One link: what both ends need to find each other, and how to build each end."""

    name: ClassVar[str]
    streams: ClassVar[bool]

    @classmethod
    def setup(cls, *, address: Callable[[], tuple[str, int]], receivers: int, backend: str,
              timeout_s: float) -> "Transport":
        """The link for `receivers` receiver ranks. `address()` gives (IP of learner rank 0's node, a
        free port there), for a transport that rendezvouses; `backend` and `timeout_s` are
        learner.weight_sync's (resolved)."""
        ...

    def sender(self) -> Sender:
        """Build the sending end (on learner rank 0). May block until every receiver joined."""
        ...

    def receiver(self, rank: int, device: torch.device | str) -> Receiver:
        """Build the receiving end of receiver `rank` (1..receivers), landing tensors on `device`."""
        ...
