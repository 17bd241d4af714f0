"""The step loops: generate -> verify -> advantages -> train -> push weights, sync or async.

`make_loop` is the one place the mode is decided (`trainer.mode`); everything mode-specific lives in
the loop it returns:
- `SyncLoop`: one role works at a time. A step draws prompts, generates and verifies them (more
  rounds with dynamic sampling), then trains and pushes the new weights, waiting for the engines.
- `AsyncLoop`: the rollout actors keep generating the requests buffered in a `RolloutQueue` while the
  step verifies, trains and pushes (without waiting for the engines to load). The queue's depth,
  `trainer.max_staleness`, bounds how many versions old a trained sample is; groups older than that
  are dropped (`stale_groups='drop'`).

Each phase is one named, timed call on the trainer (`Trainer.generate`, `verify`, `advantages`,
`train`, `push_weights`); the loops decide only their order and what a step counts. Both return the
step's metrics, or None when a stop was requested before training (the step is abandoned: the learner
has not moved, so a checkpoint of the step's start state is exact).

Besides `step`, a loop answers the trainer's questions that depend on the mode: where the data
stands for a checkpoint (`data_position`, `restored`), what to do after the stream was reordered
(`rewind`) or a rollout actor restarted (`rollout_restarted`), and `close` at the end of the run.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import torch

from forkrl.common.episode import Group, group_by_prompt
from forkrl.orchestrator.rollout_queue import Request, RolloutQueue
from forkrl.orchestrator.step_metrics import (Collected, PhaseTimer, rollout_metrics, staleness_metrics, step_metrics,
                                              train_metrics)

if TYPE_CHECKING:
    from forkrl.actors.rollout import Generated
    from forkrl.orchestrator.trainer import Trainer


def make_loop(trainer: Trainer) -> SyncLoop | AsyncLoop:
    """The loop of `trainer.mode`."""
    return AsyncLoop(trainer) if trainer.cfg.trainer.mode == "async" else SyncLoop(trainer)


class _Loop:
    """What both modes share: dynamic sampling, the rounds of a step, the step's closing metrics."""

    def __init__(self, trainer: Trainer):
        self.t = trainer

    def _rounds(self) -> int:
        ds = self.t.cfg.algorithm.dynamic_sampling
        return 1 + (ds.max_extra_rounds if ds.enabled else 0)

    def _keep(self, groups: list[Group]) -> list[Group]:
        """Dynamic sampling (DAPO): keep groups whose rewards differ."""
        from forkrl.orchestrator.sampling import keep_mask_nonzero_variance

        if not self.t.cfg.algorithm.dynamic_sampling.enabled or not groups:
            return groups
        keep = keep_mask_nonzero_variance(torch.tensor([[ep.reward for ep in g] for g in groups])).tolist()
        return [g for g, k in zip(groups, keep) if k]

    def _learn(self, groups: list[Group], timer: PhaseTimer, push: Callable[[], dict]) -> dict[str, float]:
        """advantages -> train -> push weights (`push`: the mode's), each phase timed; their metrics."""
        t = self.t
        with timer("advantages"):
            t.advantages(groups)
        with timer("train"):
            train = t.train(groups)
        with timer("push_weights"):
            pushed = push()
        return {**pushed, **train_metrics(train)}

    def _finish(self, m: dict[str, float], timer: PhaseTimer, t0: float, groups: list[Group],
                got: Collected) -> dict[str, float]:
        t = self.t
        return step_metrics(m, timer, time.perf_counter() - t0, groups, got, t.version, t.cfg.rollout.num_actors,
                            t.recovery.learner_restarts, t.pool.stats())

    # ---- the mode's answers to the trainer (sync: nothing in flight, nothing to do) ----------------
    def data_position(self) -> tuple[dict, int]:
        """(prompt stream state, request index) a checkpoint records."""
        return self.t.stream.state_dict(), 0

    def restored(self, request_index: int) -> None:
        """The stream was restored from a checkpoint."""

    def rewind(self) -> None:
        """The stream was reordered (curriculum)."""

    def rollout_restarted(self, first: Request | None = None) -> None:
        """A rollout actor was restarted and the engines re-synced."""

    def close(self) -> None:
        """The run ends."""


class SyncLoop(_Loop):
    def step(self) -> dict[str, float] | None:
        t, timer, t0 = self.t, PhaseTimer(), time.perf_counter()
        groups, got = self.collect(timer)
        if t.stop_reason:
            return None
        m = rollout_metrics(got, t.version)  # before the push bumps the version
        if groups:
            m.update(self._learn(groups, timer, t.push_weights))
        return self._finish(m, timer, t0, groups, got)

    def collect(self, timer: PhaseTimer) -> tuple[list[Group], Collected]:
        """Draw prompts, generate G samples each and score them; with dynamic sampling keep only
        groups whose rewards differ and refill from up to `max_extra_rounds` more draws."""
        t, want = self.t, self.t.cfg.trainer.prompts_per_step
        kept: list[Group] = []
        got = Collected()
        for r in range(self._rounds()):
            rows = t.stream.next_batch()
            with timer("generate"):
                groups, gen = t.generate(rows, seed=t.cfg.trainer.seed * 1_000_003 + t.step_idx * 101 + r)
            with timer("verify"):
                t.verify(rows, groups, f"s{t.step_idx}r{r}")
            if r == 0:
                t.samples.write(t.step_idx + 1, "train", rows, groups)
            got.add(groups, gen)
            kept.extend(self._keep(groups))
            if len(kept) >= want or t.stop_reason:
                break
        return kept[:want], got


class AsyncLoop(_Loop):
    def __init__(self, trainer: Trainer):
        super().__init__(trainer)
        self.queue = RolloutQueue(self._draw, self._submit)
        self.pending_push: Any = None  # the last weight push, sent but not yet confirmed
        self.last_push_metrics: dict[str, float] = {}  # of the last confirmed push

    def step(self) -> dict[str, float] | None:
        t, timer, t0 = self.t, PhaseTimer(), time.perf_counter()
        self.confirm_push(wait=False)
        groups, got = self.collect(timer)
        if t.stop_reason:
            return None
        m = rollout_metrics(got, t.version)
        m.update(staleness_metrics(groups, got, t.version))
        if groups:
            m.update(self._learn(groups, timer, self.push_weights))
        return self._finish(m, timer, t0, groups, got)

    def collect(self, timer: PhaseTimer) -> tuple[list[Group], Collected]:
        """Take generated requests from the buffer (oldest first), refill it to `max_staleness`
        requests so generation goes on while this step verifies and trains, score, drop groups older
        than `max_staleness` versions (unless stale_groups='keep'), and apply dynamic sampling."""
        t, cfg = self.t, self.t.cfg.trainer
        kept: list[Group] = []
        got = Collected()
        for _ in range(self._rounds()):
            with timer("wait_rollout"):
                request, groups, gen = self.take()
            self.queue.fill(cfg.max_staleness)
            with timer("verify"):
                t.verify(request.rows, groups, f"a{request.index}")
            t.samples.write(t.step_idx + 1, "train", request.rows, groups)
            got.add(groups, gen)
            if cfg.stale_groups == "drop":
                fresh = [g for g in groups if t.version - g[0].weight_version <= cfg.max_staleness]
                got.stale_dropped += len(groups) - len(fresh)
                groups = fresh
            kept.extend(self._keep(groups))
            if len(kept) >= cfg.prompts_per_step or t.stop_reason:
                break
        got.in_flight = len(self.queue)
        return kept[: cfg.prompts_per_step], got

    def take(self) -> tuple[Request, list[Group], Generated]:
        """Wait for the oldest request in flight (submitting one if none is); after a rollout actor
        died, recover it and submit every request in flight again."""
        import ray

        t = self.t
        self.queue.fill(1)
        request = self.queue.pop()
        try:
            gen = t.rollout.collect(request.handle)
        except ray.exceptions.RayActorError as e:
            t.recovery.rollout_died(e, t.version)
            self.rollout_restarted(first=request)
            request = self.queue.pop()
            gen = t.rollout.collect(request.handle)
        return request, group_by_prompt(gen.episodes, [r.uid for r in request.rows]), gen

    def push_weights(self) -> dict[str, float]:
        """Bump the version and send the new weights without waiting: the engines load them after
        their in-flight request and the learner goes on at once. The metrics reported are those of
        the previous push, confirmed by now."""
        t = self.t
        self.confirm_push(wait=True)
        with t.recovery.learner_phase(t.learner):
            self.pending_push = t.pusher.push(wait=False)
        return dict(self.last_push_metrics, **{"sync/version": float(self.pending_push.version)})

    def confirm_push(self, wait: bool) -> None:
        """Confirm the last weight push (`wait`: block until it landed; it normally has, since each
        engine loads it right after the request it was running). A load that failed because a rollout
        actor died triggers that actor's recovery and a new submission of the requests in flight."""
        import ray

        push = self.pending_push
        if push is None or not (wait or push.done()):
            return
        self.pending_push = None
        try:
            self.last_push_metrics = push.wait()
        except ray.exceptions.RayActorError as e:
            self.t.recovery.rollout_died(e, self.t.version)
            self.rollout_restarted()

    # ---- the request buffer ------------------------------------------------------------------
    def _draw(self) -> tuple[list, dict]:
        state = self.t.stream.state_dict()
        return self.t.stream.next_batch(), state

    def _submit(self, request: Request):
        t = self.t
        seed = t.cfg.trainer.seed * 1_000_003 + 500_009 + request.index * 101
        return t.rollout.submit(t.prompt_ids(request.rows), seed=seed)

    def data_position(self) -> tuple[dict, int]:
        """That of the oldest request not yet trained on: a resume draws its prompts again."""
        point = self.queue.resume_point()
        return point if point is not None else (self.t.stream.state_dict(), self.queue.next_index)

    def restored(self, request_index: int) -> None:
        """Forget the requests in flight: their prompts are drawn again from the restored position."""
        self.queue.clear()
        self.queue.next_index = request_index
        self.pending_push = None

    def rewind(self) -> None:
        """Requests in flight were drawn in the old order: drop them and put the stream back where the
        oldest was drawn, so they are regenerated from the new one."""
        point = self.queue.resume_point()
        self.queue.clear()
        if point is not None:
            self.t.stream.load_state_dict(point[0])
            self.queue.next_index = point[1]

    def rollout_restarted(self, first: Request | None = None) -> None:
        """Submit every request in flight again (`first` in front): the handles of a dead actor's are
        lost, and the engines now hold the current weights (a pending push is moot)."""
        self.pending_push = None
        self.queue.resubmit(first=first)

    def close(self) -> None:
        """The engines end on the final weights; a late push error surfaces here."""
        self.confirm_push(wait=True)
