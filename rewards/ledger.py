"""The verifier pool's bookkeeping as a plain state machine: which sample runs where, and who pays for a death.

No Ray and no clock in here: `rewards.pool` turns Ray refs into events (a result, a lost ref, a deadline
passed, a restarted worker) and passes the time in. That makes every ordering of events testable without
Ray (tests/test_rewards_ledger.py), which is where the pool's old bugs lived.

Life of a task: PENDING -> RUNNING on (worker, epoch) -> DONE, or back to PENDING when its worker's
incarnation is lost. Life of a worker: UP -> DRAINING (a ref of its current incarnation was lost, or the
pool killed it for a timeout) -> RESTARTING (every ref of that incarnation has resolved; the shell pings
the restarted actor) -> UP with the next epoch.

Who pays for a death. A verifier actor is a sync actor: it runs its queue in submission order, so the
task it was running when it died is the FIRST of its queue whose ref did not come back with a Score.
Refs resolve in any order (a Score of the head may be processed after the error of the task behind it),
so the charge is decided only when every ref of the dead incarnation has resolved ("settle"): results
that came back count as done, the first lost task is charged (retried once; charged twice it scores 0
"crash: verifier worker died"), every later lost task never started and goes back to PENDING uncharged.
The outcome is therefore the same for every arrival order. A timeout kill is the pool's own doing: the
head scores 0 "timeout" at once and nothing is charged.

Queues deeper than one are supported here and tested in every arrival order, but the pool runs one
sample per actor: Ray can lose a finished task's reply when the process dies right after it, and then
no bookkeeping can tell "finished" from "running" (see rewards/pool.py). At depth one a lost ref is
the task that was running, or, for a worker that died idle, the first task sent to the dead incarnation
(charged and retried once: it still runs at most twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from .types import Score

PENDING, RUNNING, DONE = "pending", "running", "done"
UP, DRAINING, RESTARTING = "up", "draining", "restarting"
DIED, KILLED = "died", "killed"


@dataclass
class _Attempt:
    task: int
    resolved: bool = False  # its ref came back; if its task is not DONE then, the ref was lost


@dataclass
class _Worker:
    state: str = UP
    epoch: int = 0
    attempts: list[_Attempt] = field(default_factory=list)  # this incarnation's, in submission order
    head_since: float | None = None  # when the first unresolved attempt became the head; None unless UP
    end: str | None = None  # DIED or KILLED while DRAINING


class Ledger:
    """Exactly-once scoring of `uids` (input order) over `num_workers` sync actors.

    The caller loops: `assign(now)` -> submit each (worker, epoch, task); feed `result`/`lost` as refs
    resolve, `timeout` for each worker in `expired(now)`, `restarted` when a pinged actor answers;
    stop when `done()`. `scores()` is then one Score per uid, in input order.
    """

    def __init__(self, uids: list[str], num_workers: int, max_inflight: int, deadline_s: float,
                 restarting: tuple[int, ...] = (), max_runs: int = 2):
        self.uids = uids
        self.max_inflight = max_inflight
        self.deadline_s = deadline_s
        self.max_runs = max_runs
        self.state = [PENDING] * len(uids)
        self.charged = [0] * len(uids)
        self.pending: list[int] = list(range(len(uids)))  # front = next to submit
        self._scores: list[Score | None] = [None] * len(uids)
        self.workers = [_Worker(state=RESTARTING if w in restarting else UP) for w in range(num_workers)]
        self.counts = dict.fromkeys(("worker_deaths", "timeouts", "retries", "resubmitted", "crashes"), 0)

    # ---- queries ------------------------------------------------------------------------------------------
    def done(self) -> bool:
        return all(s == DONE for s in self.state)

    def scores(self) -> list[Score]:
        assert self.done(), "scores() before every task is done"
        return list(self._scores)  # type: ignore[arg-type]

    def restarting(self) -> list[int]:
        """Workers whose dead incarnation has fully resolved: ping them, then call `restarted`."""
        return [w for w, wk in enumerate(self.workers) if wk.state == RESTARTING]

    def expired(self, now: float) -> list[int]:
        return [w for w, wk in enumerate(self.workers)
                if wk.head_since is not None and now >= wk.head_since + self.deadline_s]

    def next_deadline(self) -> float | None:
        heads = [wk.head_since for wk in self.workers if wk.head_since is not None]
        return min(heads) + self.deadline_s if heads else None

    # ---- events -------------------------------------------------------------------------------------------
    def assign(self, now: float) -> list[tuple[int, int, int]]:
        """Fill free slots of UP workers from the front of PENDING: [(worker, epoch, task)] to submit."""
        out = []
        for w, wk in enumerate(self.workers):
            while wk.state == UP and self.pending and self._inflight(wk) < self.max_inflight:
                i = self.pending.pop(0)
                self.state[i] = RUNNING
                wk.attempts.append(_Attempt(i))
                if wk.head_since is None:
                    wk.head_since = now
                out.append((w, wk.epoch, i))
        return out

    def result(self, w: int, epoch: int, task: int, score: Score, now: float) -> None:
        """The ref of `task` on (w, epoch) came back with a Score. The first Score of a task is final."""
        att = self._attempt(w, epoch, task)
        if att is None:
            return
        att.resolved = True
        if self.state[task] != DONE:
            self._finish(task, score)
        self._advance(w, now)

    def lost(self, w: int, epoch: int, task: int, now: float) -> None:
        """The ref of `task` on (w, epoch) failed because the actor died (or was killed)."""
        att = self._attempt(w, epoch, task)
        if att is None:
            return
        att.resolved = True
        wk = self.workers[w]
        if wk.state == UP:
            wk.state, wk.end, wk.head_since = DRAINING, DIED, None
            self.counts["worker_deaths"] += 1
        self._advance(w, now)

    def timeout(self, w: int, now: float) -> int:
        """The head of w ran past its deadline: it scores 0 "timeout"; the shell kills the actor."""
        wk = self.workers[w]
        head = next(a for a in wk.attempts if not a.resolved)
        self._finish(head.task, Score(self.uids[head.task], 0.0, False, "timeout"))
        self.counts["timeouts"] += 1
        wk.state, wk.end, wk.head_since = DRAINING, KILLED, None
        self._advance(w, now)
        return head.task

    def restarted(self, w: int) -> None:
        wk = self.workers[w]
        if wk.state == RESTARTING:
            wk.state = UP

    # ---- internals ----------------------------------------------------------------------------------------
    @staticmethod
    def _inflight(wk: _Worker) -> int:
        return sum(not a.resolved for a in wk.attempts)

    def _attempt(self, w: int, epoch: int, task: int) -> _Attempt | None:
        """The unresolved attempt of `task` in w's current incarnation; None for a stale event."""
        wk = self.workers[w]
        if epoch != wk.epoch:
            return None
        return next((a for a in wk.attempts if a.task == task and not a.resolved), None)

    def _finish(self, task: int, score: Score) -> None:
        if self.state[task] == PENDING:
            self.pending.remove(task)
        self.state[task] = DONE
        self._scores[task] = score

    def _advance(self, w: int, now: float) -> None:
        wk = self.workers[w]
        if wk.state == UP:
            wk.head_since = now if self._inflight(wk) else None
            wk.attempts = [a for a in wk.attempts if not a.resolved]
        elif wk.state == DRAINING and self._inflight(wk) == 0:
            self._settle(wk)

    def _settle(self, wk: _Worker) -> None:
        """Every ref of the dead incarnation has resolved: charge the one that was running, requeue the rest."""
        lost = [a.task for a in wk.attempts if self.state[a.task] != DONE]  # all resolved: these were lost
        back = []
        for k, i in enumerate(lost):
            if k == 0 and wk.end == DIED:
                self.charged[i] += 1
                if self.charged[i] >= self.max_runs:
                    self._finish(i, Score(self.uids[i], 0.0, False, "crash: verifier worker died"))
                    self.counts["crashes"] += 1
                    continue
                self.counts["retries"] += 1
            else:
                self.counts["resubmitted"] += 1
            back.append(i)
        for i in back:
            self.state[i] = PENDING
        self.pending[:0] = back  # in their original order, ahead of work never tried
        wk.attempts, wk.end, wk.head_since = [], None, None
        wk.epoch += 1
        wk.state = RESTARTING

