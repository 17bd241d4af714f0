"""`VerifierPool`: score samples in parallel on Ray actors, surviving crashes, hangs and dead workers.

Each actor wraps a plain `Verifier` and runs one sample per task, in order (a sync actor), so the
driver knows which sample an actor is working on: the head of that actor's queue. That gives:
- per-sample timeout: the head's clock starts when it reaches the head; past `timeout_s +
  kill_grace_s` it scores 0 "timeout" and the actor is killed (Ray restarts it);
- exactly-once results: each input index gets its Score once; samples queued behind a dead or killed
  head are resubmitted without charge, the head that was running when a worker died is retried once
  ("crash: verifier worker died" the second time);
- backpressure: at most `max_inflight_per_worker` tasks per actor, the rest wait in the driver;
- restarts: after a death the actor is pinged before it gets new work, so nothing is sent to the
  dying incarnation; an actor past `max_restarts` is replaced by a new one.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import ray
from ray.exceptions import RayActorError

from .config import RewardConfig
from .types import Sample, Score
from .verifier import Verifier


@ray.remote(max_restarts=-1, max_task_retries=0)
class VerifierActor:
    def __init__(self, cfg: RewardConfig):
        self._verifier = Verifier(cfg)

    def ready(self) -> bool:
        return True

    def score(self, sample: Sample) -> Score:
        return self._verifier.score(sample)


@dataclass
class _Task:
    index: int
    ref: ray.ObjectRef
    deadline: float | None = None  # set when the task becomes its actor's head


@dataclass
class _Worker:
    handle: ray.actor.ActorHandle
    queue: deque = field(default_factory=deque)
    ping: ray.ObjectRef | None = None  # set while (re)starting: no work until it answers
    deaths: int = 0
    failed_pings: int = 0


_COUNTERS = ("samples", "user_errors", "timeouts", "worker_deaths", "retries", "resubmitted", "restarts",
             "replaced", "score_s")


class VerifierPool:
    def __init__(self, cfg: RewardConfig):
        self.cfg = cfg
        self._workers = [_Worker(self._new_actor()) for _ in range(cfg.num_workers)]
        # surface configuration errors (bad user-function path) here, not as dead actors later
        ray.get([w.handle.ready.remote() for w in self._workers])
        self._stats = dict.fromkeys(_COUNTERS, 0.0)

    def _new_actor(self) -> ray.actor.ActorHandle:
        return VerifierActor.options(num_cpus=self.cfg.cpus_per_worker, max_restarts=self.cfg.max_restarts).remote(self.cfg)

    # ---- public API -------------------------------------------------------------------------------------
    def score(self, samples: list[Sample]) -> list[Score]:
        """Scores in input order; every sample gets exactly one Score, failures included."""
        t0 = time.monotonic()
        results: list[Score | None] = [None] * len(samples)
        todo = deque(range(len(samples)))
        charged = [0] * len(samples)
        owner: dict[ray.ObjectRef, _Worker] = {}

        def finish(i: int, score: Score) -> None:
            if results[i] is None:
                results[i] = score

        def requeue(w: _Worker, reason: str) -> None:
            """The worker lost its queue (died or killed): charge the running head, resubmit the rest."""
            for k, task in enumerate(w.queue):
                owner.pop(task.ref, None)
                if results[task.index] is not None:
                    continue
                if k == 0 and reason == "died":
                    charged[task.index] += 1
                    if charged[task.index] >= 2:
                        finish(task.index, Score(samples[task.index].uid, 0.0, False, "crash: verifier worker died"))
                        continue
                    self._stats["retries"] += 1
                    todo.appendleft(task.index)
                elif k > 0:
                    self._stats["resubmitted"] += 1
                    todo.appendleft(task.index)
            w.queue.clear()
            w.deaths += 1
            self._stats["restarts"] += 1
            if self.cfg.max_restarts != -1 and w.deaths > self.cfg.max_restarts:
                w.handle, w.deaths = self._new_actor(), 0
                self._stats["replaced"] += 1
            w.ping = w.handle.ready.remote()
            owner[w.ping] = w

        while todo or owner:
            now = time.monotonic()
            for w in self._workers:  # fill free slots; the head's clock starts when it is the head
                while w.ping is None and todo and len(w.queue) < self.cfg.max_inflight_per_worker:
                    i = todo.popleft()
                    task = _Task(i, w.handle.score.remote(samples[i]))
                    w.queue.append(task)
                    owner[task.ref] = w
                if w.queue and w.queue[0].deadline is None:
                    w.queue[0].deadline = now + self.cfg.timeout_s + self.cfg.kill_grace_s
            deadlines = [w.queue[0].deadline for w in self._workers if w.queue and w.ping is None]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else None
            ready, _ = ray.wait(list(owner), num_returns=1, timeout=wait_s)
            for ref in ready:
                w = owner.pop(ref, None)
                if w is None:
                    continue
                if ref == w.ping:
                    self._on_ping(w, ref, owner)
                    continue
                try:
                    score = ray.get(ref)
                except RayActorError:
                    owner[ref] = w  # still listed in w.queue; requeue drops it with the rest
                    self._stats["worker_deaths"] += 1
                    requeue(w, "died")
                    continue
                except Exception as e:  # e.g. a Score that does not unpickle: this sample only
                    task = self._pop(w, ref)
                    finish(task.index, Score(samples[task.index].uid, 0.0, False, f"crash: {type(e).__name__}"))
                    self._stats["user_errors"] += 1
                    continue
                task = self._pop(w, ref)
                if score.reason.startswith("crash"):
                    self._stats["user_errors"] += 1
                finish(task.index, score)
            now = time.monotonic()
            for w in self._workers:
                if w.ping is None and w.queue and w.queue[0].deadline is not None and now >= w.queue[0].deadline:
                    head = w.queue[0]
                    finish(head.index, Score(samples[head.index].uid, 0.0, False, "timeout"))
                    self._stats["timeouts"] += 1
                    ray.kill(w.handle, no_restart=False)
                    requeue(w, "killed")
        self._stats["samples"] += len(samples)
        self._stats["score_s"] += time.monotonic() - t0
        return results  # type: ignore[return-value]

    def stats(self) -> dict[str, float]:
        """Counters since the last call (samples, user_errors, timeouts, worker_deaths, retries, ...)."""
        out, self._stats = self._stats, dict.fromkeys(_COUNTERS, 0.0)
        out["samples_per_s"] = out["samples"] / out["score_s"] if out["score_s"] > 0 else 0.0
        return out

    def shutdown(self) -> None:
        for w in self._workers:
            ray.kill(w.handle, no_restart=True)
        self._workers = []

    # ---- helpers ----------------------------------------------------------------------------------------
    @staticmethod
    def _pop(w: _Worker, ref: ray.ObjectRef) -> _Task:
        for k, task in enumerate(w.queue):
            if task.ref == ref:
                del w.queue[k]
                if k == 0 and w.queue:
                    w.queue[0].deadline = None  # the next one's clock starts now (set in the fill step)
                return task
        raise KeyError(ref)

    def _on_ping(self, w: _Worker, ref: ray.ObjectRef, owner: dict) -> None:
        try:
            ray.get(ref)
            w.ping, w.failed_pings = None, 0
        except RayActorError:  # the ping reached the dying incarnation, or the restart failed: ask again
            w.failed_pings += 1
            if w.failed_pings > 50:
                raise RuntimeError("a verifier actor failed to restart 50 times in a row") from None
            if self.cfg.max_restarts != -1 and w.deaths > self.cfg.max_restarts:
                w.handle, w.deaths = self._new_actor(), 0
                self._stats["replaced"] += 1
            w.deaths += 1
            w.ping = w.handle.ready.remote()
            owner[w.ping] = w
