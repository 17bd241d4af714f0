"""Fault handling, in one place: which failures the run survives, what each costs, and when it gives up.

- A learner rank dies during a learner phase (train, weight push, checkpoint, loss update): the phase
  raises `LearnerFailed` (`Recovery.learner_phase` tells a dead rank from any other Ray error); the
  run loop calls `Recovery.learner_failed`, which restarts the learner group from the last checkpoint
  (or the run's initial state) up to `trainer.max_restarts` times, then re-raises. The steps since
  that checkpoint are redone.
- A rollout actor dies: Ray restarts it with the initial weights (max_restarts=1 on the actor);
  `Recovery.rollout_died` brings every engine to the current weights. The caller then submits its
  request (and, in async mode, every request in flight) again; nothing the failed attempt generated
  is kept.

What it does not do: know how a learner group is started or a checkpoint loaded (the trainer hands
it `restart_learner`), or how engines are re-synced (`resync_rollout`). SIGTERM is not a fault: the
trainer checkpoints and returns `stopped`.
"""
from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from forkrl.learner.group import LearnerGroup

log = logging.getLogger("forkrl")


class LearnerFailed(RuntimeError):
    """A learner rank died during a learner phase; the run loop restarts the group."""


class Recovery:
    def __init__(self, max_restarts: int, restart_learner: Callable[[], None],
                 resync_rollout: Callable[[], None]):
        """restart_learner(): tear the learner group down, start a new one and bring it (and the loop)
        to the last checkpoint. resync_rollout(): load the current weights into every engine."""
        self.max_restarts = max_restarts
        self.learner_restarts = 0
        self._restart_learner, self._resync_rollout = restart_learner, resync_rollout

    @contextlib.contextmanager
    def learner_phase(self, learner: LearnerGroup) -> Iterator[None]:
        """Turn a Ray error into LearnerFailed when a learner rank is dead (a live rank that lost its
        peer may fail first with a collective error). Other errors pass through unchanged."""
        import ray

        try:
            yield
        except ray.exceptions.RayError as e:
            dead = learner.dead_ranks()
            if not dead:
                raise
            raise LearnerFailed(f"learner rank(s) {dead} died ({type(e).__name__})") from e

    def learner_failed(self, err: LearnerFailed, step: int) -> None:
        """Restart the learner group (the loop then redoes the steps since the checkpoint it loaded);
        re-raise `err` once `max_restarts` restarts are spent. `step`: the step that failed (logged)."""
        if self.learner_restarts >= self.max_restarts:
            log.error("%s; trainer.max_restarts=%d reached", err, self.max_restarts)
            raise err
        self.learner_restarts += 1
        log.warning("%s at step %d; restarting the learner group (%d of %d)", err, step,
                    self.learner_restarts, self.max_restarts)
        self._restart_learner()

    def rollout_died(self, err: Exception, version: int) -> None:
        """A rollout actor died and Ray restarted it: bring the engines to `version` (the current
        weights). The caller submits its requests again afterwards, so they run on those weights."""
        log.warning("rollout actor died (%s); restoring weights v%d", type(err).__name__, version)
        self._resync_rollout()
