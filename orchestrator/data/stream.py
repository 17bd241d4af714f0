"""``PromptStream``: the training prompts as endless batches in a seeded, resumable order."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

from forkrl.orchestrator.data.rows import PromptRow


class PromptStream:
    """Endless batches of prompts in a deterministic, seeded, per-epoch shuffled order.

    Epoch ``e`` is a permutation seeded by ``(seed, e)``, so ``(epoch, position)`` is all the state an
    exact resume needs. A batch that reaches the end of an epoch continues into the next one, so every
    batch is full. ``set_order(uids)`` installs a custom order (e.g. a curriculum's): it is served from
    its start at the next batch and for every later epoch, until ``set_order(None)`` returns to
    shuffling. A custom order may name a subset of the rows (the others are then not served).
    """

    def __init__(self, rows: Sequence[PromptRow], batch_size: int, seed: int = 0):
        if not rows:
            raise ValueError("PromptStream needs at least one row")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.rows = list(rows)
        self.batch_size = batch_size
        self.seed = seed
        self._index = {r.uid: i for i, r in enumerate(self.rows)}
        if len(self._index) != len(self.rows):
            raise ValueError("PromptStream rows must have unique uids")
        self.epoch = 0
        self.position = 0
        self._custom: list[int] | None = None
        self._order = self._epoch_order()

    def _epoch_order(self) -> list[int]:
        if self._custom is not None:
            return list(self._custom)
        order = list(range(len(self.rows)))
        random.Random(f"stream:{self.seed}:{self.epoch}").shuffle(order)
        return order

    def set_order(self, uids: Sequence[str] | None) -> None:
        """Serve ``uids`` in this order from the next batch on (``None``: back to seeded shuffles)."""
        if uids is not None:
            unknown = [u for u in uids if u not in self._index]
            if unknown:
                raise ValueError(f"set_order: {len(unknown)} unknown uids, e.g. {unknown[:3]}")
            if len(set(uids)) != len(uids):
                raise ValueError("set_order: duplicate uids")
            if not uids:
                raise ValueError("set_order: empty order")
            self._custom = [self._index[u] for u in uids]
        else:
            self._custom = None
        if self.position > 0:  # a new order starts a new pass
            self.epoch += 1
            self.position = 0
        self._order = self._epoch_order()

    def next_batch(self) -> list[PromptRow]:
        batch = []
        while len(batch) < self.batch_size:
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._epoch_order()
            take = min(self.batch_size - len(batch), len(self._order) - self.position)
            batch.extend(self.rows[i] for i in self._order[self.position:self.position + take])
            self.position += take
        return batch

    def __iter__(self) -> Iterator[list[PromptRow]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        order = None if self._custom is None else [self.rows[i].uid for i in self._custom]
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "num_rows": len(self.rows), "order": order, "fingerprint": self.fingerprint()}

    def fingerprint(self) -> str:
        """A hash of every row's uid, prompt and answer: a resume must continue on the SAME rows, not on
        rows a changed generator or file happens to give the same count (the eval hold-out changed
        which problems train under one seed, for instance)."""
        h = hashlib.blake2b(digest_size=12)
        for r in self.rows:
            h.update(json.dumps([r.uid, r.messages, r.answer], sort_keys=True).encode())
        return h.hexdigest()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_rows"] != len(self.rows) or state["seed"] != self.seed:
            raise ValueError(
                f"PromptStream state is for {state['num_rows']} rows / seed {state['seed']}, but this "
                f"stream has {len(self.rows)} rows / seed {self.seed}: the data changed since the "
                f"checkpoint"
            )
        if "fingerprint" in state and state["fingerprint"] != self.fingerprint():  # absent: older checkpoints
            raise ValueError(
                f"PromptStream state is for different rows (fingerprint {state['fingerprint']}, this stream "
                f"{self.fingerprint()}): the data changed since the checkpoint"
            )
        order = state.get("order")
        if order is not None:
            unknown = [u for u in order if u not in self._index]
            if unknown:
                raise ValueError(f"PromptStream state names unknown uids, e.g. {unknown[:3]}")
        self._custom = None if order is None else [self._index[u] for u in order]
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._epoch_order()
