"""`VerifierPool`: score samples in parallel on Ray actors, surviving crashes, hangs and dead workers.

A thin Ray shell around `rewards.ledger.Ledger`, which owns every decision (what runs where, what a
death costs, when a head has timed out). This module only turns Ray into events:
- a ref that returns a Score -> `result`; a ref that raises something else -> `result` with a crash Score;
- a ref that raises `RayActorError` (the actor died, was killed, or cannot be reached) -> `lost`;
- a head past `timeout_s + kill_grace_s` -> `timeout`, then `ray.kill` (Ray restarts the actor);
- a restarted actor's `ready()` ping answering -> `restarted`. An actor past `max_restarts` is replaced.
Sandbox dirs a killed actor leaves behind (fallback isolation only: bwrap writes nothing to the host)
are swept by the next actor that starts on that node and by `shutdown`.
What a user sees: one Score per sample, in input order; a crash or hang costs that sample's reward only,
and a sample that killed its worker runs at most twice.

One sample in flight per actor, on purpose. Ray sends a task's reply asynchronously: when the actor's
process dies while running sample k+1 (a user function calling os._exit), the reply of the FINISHED
sample k can die with it, and k would be charged and run again. That happened in 1 of 3 runs of
tests/test_rewards_pool.py with two samples queued per actor. Sending k+1 only after k's Score has
arrived removes the ambiguity: a lost ref is always the sample that was running (or, for a worker that
died idle, the first one sent to the dead incarnation). Queueing measured 10-20% more math samples/s at
best (cached answers, ~3 ms each; code samples take 50+ ms, where the round trip is noise); add
workers (`reward.num_workers`, 0.25 CPU each) for throughput instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray
from ray.exceptions import RayActorError

from forkrl.common.episode import Episode

from .config import RewardConfig
from .ledger import Ledger
from .sandbox import sweep_stale_dirs
from .types import Reference, Sample, Score, record_scores, samples_of_groups
from .verifier import Verifier


@ray.remote(max_restarts=-1, max_task_retries=0)
class VerifierActor:
    def __init__(self, cfg: RewardConfig):
        # a killed predecessor (timeout kill, crash) cannot clean up after itself: its sandbox dirs go here
        sweep_stale_dirs()
        self._verifier = Verifier(cfg)

    def ready(self) -> bool:
        return True

    def score(self, sample: Sample) -> Score:
        return self._verifier.score(sample)


@dataclass
class _Actor:
    """The Ray side of one pool slot; survives across `score` calls (the ledger does not)."""

    handle: ray.actor.ActorHandle
    ping: ray.ObjectRef | None = None  # set while restarting: no work until it answers
    deaths: int = 0
    failed_pings: int = 0


_COUNTERS = ("samples", "user_errors", "data_errors", "bad_boxes", "protocol_violations", "timeouts", "worker_deaths",
             "retries", "resubmitted", "restarts", "replaced", "score_s")
# Score.reason prefix -> counter: a step's `verify/*` metrics show what the verifier refused, and why
_TALLY = (("crash", "user_errors"), ("data_error", "data_errors"), ("bad_box", "bad_boxes"),
          ("protocol violation", "protocol_violations"))
_MAX_FAILED_PINGS = 50


class VerifierPool:
    def __init__(self, cfg: RewardConfig):
        self.cfg = cfg
        self._actors = [_Actor(self._new_actor()) for _ in range(cfg.num_workers)]
        # surface configuration errors (bad user-function path) here, not as dead actors later
        ray.get([a.handle.ready.remote() for a in self._actors])
        self._stats = dict.fromkeys(_COUNTERS, 0.0)

    def _new_actor(self) -> ray.actor.ActorHandle:
        return VerifierActor.options(num_cpus=self.cfg.cpus_per_worker, max_restarts=self.cfg.max_restarts).remote(self.cfg)

    # ---- public API -------------------------------------------------------------------------------------
    def score(self, samples: list[Sample]) -> list[Score]:
        """Scores in input order; every sample gets exactly one Score, failures included."""
        t0 = time.monotonic()
        book = Ledger([s.uid for s in samples], len(self._actors), 1,
                      self.cfg.timeout_s + self.cfg.kill_grace_s,
                      restarting=tuple(w for w, a in enumerate(self._actors) if a.ping is not None))
        refs: dict[ray.ObjectRef, tuple[int, int, int]] = {}  # task ref -> (worker, epoch, task)
        pings: dict[ray.ObjectRef, int] = {a.ping: w for w, a in enumerate(self._actors) if a.ping is not None}

        while not book.done():
            now = time.monotonic()
            for w, epoch, i in book.assign(now):
                refs[self._actors[w].handle.score.remote(samples[i])] = (w, epoch, i)
            for w in book.restarting():
                if self._actors[w].ping is None:
                    pings[self._restart(w)] = w
            deadline = book.next_deadline()
            wait_s = max(0.0, deadline - now) if deadline is not None else None
            ready, _ = ray.wait([*refs, *pings], num_returns=1, timeout=wait_s)
            for ref in ready:
                if ref in pings:
                    self._on_ping(pings.pop(ref), ref, book, pings)
                else:
                    self._on_ref(ref, refs.pop(ref), book, samples)
            now = time.monotonic()
            for w in book.expired(now):
                self._collect(w, refs, book, samples)  # a head that finished just now is not a timeout
                if w in book.expired(now):
                    book.timeout(w, now)
                    ray.kill(self._actors[w].handle, no_restart=False)
        for w in book.restarting():  # the call may end before a dead worker's restart was asked for
            if self._actors[w].ping is None:
                self._restart(w)
        for k in ("worker_deaths", "timeouts", "retries", "resubmitted"):
            self._stats[k] += book.counts[k]
        self._stats["user_errors"] += book.counts["crashes"]
        self._stats["samples"] += len(samples)
        self._stats["score_s"] += time.monotonic() - t0
        return book.scores()

    def score_groups(self, groups: list[list[Episode]], refs: list[Reference], tag: str) -> None:
        """Score rollout Episodes in place (reward, correct, extracted, verdict), each group against its
        prompt's Reference: the Episode -> Sample conversion of the verifier boundary."""
        record_scores(groups, self.score(samples_of_groups(groups, refs, tag)))

    def stats(self) -> dict[str, float]:
        """Counters since the last call (samples, user_errors, timeouts, worker_deaths, retries, ...)."""
        out, self._stats = self._stats, dict.fromkeys(_COUNTERS, 0.0)
        out["samples_per_s"] = out["samples"] / out["score_s"] if out["score_s"] > 0 else 0.0
        return out

    def shutdown(self) -> None:
        for a in self._actors:
            ray.kill(a.handle, no_restart=True)
        self._actors = []
        sweep_stale_dirs()  # the driver's node: dirs of the actors just killed (other nodes: their next worker)

    # ---- Ray -> ledger events ---------------------------------------------------------------------------
    def _on_ref(self, ref: ray.ObjectRef, where: tuple[int, int, int], book: Ledger, samples: list[Sample]) -> None:
        w, epoch, i = where
        try:
            score = ray.get(ref)
        except RayActorError:
            book.lost(w, epoch, i, time.monotonic())
            return
        except Exception as e:  # e.g. a Score that does not unpickle: this sample only
            score = Score(samples[i].uid, 0.0, False, f"crash: {type(e).__name__}")
        for prefix, counter in _TALLY:
            if score.reason.startswith(prefix):
                self._stats[counter] += 1
        book.result(w, epoch, i, score, time.monotonic())

    def _collect(self, w: int, refs: dict, book: Ledger, samples: list[Sample]) -> None:
        """Feed every already-resolved ref of worker w (without blocking)."""
        mine = [r for r, (wr, _, _) in refs.items() if wr == w]
        if mine:
            ready, _ = ray.wait(mine, num_returns=len(mine), timeout=0)
            for ref in ready:
                self._on_ref(ref, refs.pop(ref), book, samples)

    def _restart(self, w: int) -> ray.ObjectRef:
        """Ask the (Ray-restarted, or replaced past max_restarts) actor to answer before it gets work."""
        a = self._actors[w]
        a.deaths += 1
        self._stats["restarts"] += 1
        if self.cfg.max_restarts != -1 and a.deaths > self.cfg.max_restarts:
            ray.kill(a.handle, no_restart=True)
            a.handle, a.deaths = self._new_actor(), 0
            self._stats["replaced"] += 1
        a.ping = a.handle.ready.remote()
        return a.ping

    def _on_ping(self, w: int, ref: ray.ObjectRef, book: Ledger, pings: dict) -> None:
        a = self._actors[w]
        try:
            ray.get(ref)
        except RayActorError:  # the ping reached the dying incarnation, or the restart failed: ask again
            a.failed_pings += 1
            if a.failed_pings > _MAX_FAILED_PINGS:
                raise RuntimeError(f"verifier actor {w} failed to restart {_MAX_FAILED_PINGS} times in a row") from None
            a.ping = None
            pings[self._restart(w)] = w
            return
        a.ping, a.failed_pings = None, 0
        book.restarted(w)
