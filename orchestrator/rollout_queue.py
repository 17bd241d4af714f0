"""The bounded buffer of async mode: generation requests in flight, oldest first.

While the learner trains on step t's groups, the rollout actors work through the requests queued here.
Each request remembers the prompt stream's state from before its prompts were drawn, so a checkpoint
can record the position of the oldest request not yet trained on: on resume those prompts are drawn
and generated again (nothing in flight is lost, nothing is trained twice).

Why the depth bounds staleness: Ray runs an actor's tasks in submit order, and the trainer submits a
weight load after every learner step. With `depth` requests in flight while the learner trains, a
request consumed at learner version v was submitted after the load of version >= v - depth, so its
Episodes are at most `depth` versions old.

Plain Python with the two role calls injected (`draw`, `submit`): tests drive it without Ray.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Request:
    index: int
    """Position in the run's sequence of requests (seeds are a function of it)."""
    rows: list
    """The prompt rows drawn for it."""
    resume_state: dict
    """The prompt stream's state before `rows` were drawn."""
    handle: Any = None
    """What `submit` returned (the rollout's pending request)."""


class RolloutQueue:
    def __init__(self, draw: Callable[[], tuple[list, dict]], submit: Callable[[Request], Any],
                 next_index: int = 0):
        """draw() -> (rows, stream state before drawing them); submit(request) -> handle."""
        self._draw, self._submit = draw, submit
        self.next_index = next_index
        self._queue: deque[Request] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def fill(self, depth: int) -> None:
        """Submit new requests, oldest index first, until `depth` are in flight."""
        while len(self._queue) < depth:
            rows, state = self._draw()
            req = Request(self.next_index, rows, state)
            self.next_index += 1
            req.handle = self._submit(req)
            self._queue.append(req)

    def pop(self) -> Request:
        """The oldest request (the caller waits on its handle)."""
        if not self._queue:
            raise IndexError("no request in flight: fill() first")
        return self._queue.popleft()

    def resume_point(self) -> tuple[dict, int] | None:
        """(stream state, request index) of the oldest request in flight; None when none is."""
        if not self._queue:
            return None
        return self._queue[0].resume_state, self._queue[0].index

    def resubmit(self, first: Request | None = None) -> None:
        """Submit every request in flight again, in order (`first` goes in front): after a rollout
        actor died, the handles of its requests are lost."""
        reqs = ([first] if first is not None else []) + list(self._queue)
        self._queue.clear()
        for req in reqs:
            req.handle = self._submit(req)
            self._queue.append(req)

    def clear(self) -> None:
        """Forget every request in flight (a checkpoint was restored: the stream rewinds to its state).
        `next_index` is left alone: the caller sets it."""
        self._queue.clear()
