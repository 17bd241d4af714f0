"""The verifier pool's bookkeeping without Ray: every arrival order of results and lost refs gives the same
verdicts, a death is charged to the task that was running and nothing else, and a task runs at most twice."""

import itertools

import pytest

from forkrl.rewards.ledger import Ledger
from forkrl.rewards.types import Score

DEADLINE = 10.0


def ok(uid):
    return Score(uid, 1.0, True, "ok")


def book(n, workers=1, inflight=3, **kw):
    return Ledger([f"u{i}" for i in range(n)], workers, inflight, DEADLINE, **kw)


def test_plain_run_fills_slots_in_order_and_returns_input_order():
    b = book(5, workers=2, inflight=2)
    assert b.assign(0.0) == [(0, 0, 0), (0, 0, 1), (1, 0, 2), (1, 0, 3)]
    assert b.assign(0.0) == []  # no free slot
    for w, i in [(1, 3), (0, 0), (1, 2), (0, 1)]:  # results in any order
        b.result(w, 0, i, ok(f"u{i}"), 1.0)
    assert b.assign(1.0) == [(0, 0, 4)]
    b.result(0, 0, 4, ok("u4"), 2.0)
    assert b.done()
    assert [s.uid for s in b.scores()] == ["u0", "u1", "u2", "u3", "u4"]
    assert b.charged == [0] * 5 and b.counts["worker_deaths"] == 0


# Worker 0 holds [t0, t1, t2]; t0 finished, the process died while running t1, t2 never started.
# Ray may hand these three refs to the driver in any order: the verdict must not depend on it.
EVENTS = [("result", 0), ("lost", 1), ("lost", 2)]


@pytest.mark.parametrize("order", list(itertools.permutations(EVENTS)))
def test_death_charged_to_the_running_task_for_every_arrival_order(order):
    b = book(3)
    assert b.assign(0.0) == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    for kind, i in order:
        if kind == "result":
            b.result(0, 0, i, ok(f"u{i}"), 1.0)
        else:
            b.lost(0, 0, i, 1.0)
    assert b.charged == [0, 1, 0]  # t1 only: t0 had finished, t2 never ran
    assert b.state == ["done", "pending", "pending"]
    assert b.pending == [1, 2]  # retried first, in their original order
    assert b.restarting() == [0] and b.assign(1.0) == []  # no work for a worker that has not answered
    assert b.counts == {"worker_deaths": 1, "timeouts": 0, "retries": 1, "resubmitted": 1, "crashes": 0}
    b.restarted(0)
    assert b.assign(2.0) == [(0, 1, 1), (0, 1, 2)]  # the next epoch
    b.result(0, 1, 1, ok("u1"), 3.0)
    b.result(0, 1, 2, ok("u2"), 3.0)
    assert [s.reward for s in b.scores()] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("order", list(itertools.permutations([("result", 0), ("result", 1), ("lost", 2)])))
def test_finished_tasks_are_never_rerun_whatever_the_order(order):
    b = book(3)
    b.assign(0.0)
    for kind, i in order:
        (b.result(0, 0, i, ok(f"u{i}"), 1.0) if kind == "result" else b.lost(0, 0, i, 1.0))
    assert b.charged == [0, 0, 1] and b.pending == [2]


def test_task_that_kills_its_worker_twice_runs_twice_then_scores_crash():
    b = book(2, inflight=2)
    b.assign(0.0)
    b.lost(0, 0, 1, 1.0)  # t0 died (its ref arrives second)
    b.lost(0, 0, 0, 1.0)
    assert b.charged == [1, 0] and b.pending == [0, 1]
    b.restarted(0)
    assert b.assign(2.0) == [(0, 1, 0), (0, 1, 1)]
    b.lost(0, 1, 0, 3.0)
    b.lost(0, 1, 1, 3.0)
    assert b.charged == [2, 0]
    s0 = b._scores[0]
    assert (s0.uid, s0.reward, s0.correct, s0.reason) == ("u0", 0.0, False, "crash: verifier worker died")
    assert b.pending == [1] and b.counts["crashes"] == 1 and b.counts["retries"] == 1
    b.restarted(0)
    assert b.assign(4.0) == [(0, 2, 1)]  # the innocent one, uncharged
    b.result(0, 2, 1, ok("u1"), 5.0)
    assert b.done() and b.charged == [2, 0]


def test_stale_events_of_an_old_incarnation_are_ignored():
    b = book(2, inflight=1)
    b.assign(0.0)
    b.lost(0, 0, 0, 1.0)
    b.restarted(0)
    assert b.assign(1.0) == [(0, 1, 0)]
    b.result(0, 0, 0, Score("u0", 0.5, False, "stale"), 1.5)  # a late ref of epoch 0
    b.lost(0, 0, 0, 1.5)
    assert b.state[0] == "running" and b.workers[0].state == "up"
    b.result(0, 1, 0, ok("u0"), 2.0)
    assert b._scores[0].reason == "ok"


def test_duplicate_result_for_the_same_attempt_is_ignored():
    b = book(1)
    b.assign(0.0)
    b.result(0, 0, 0, ok("u0"), 1.0)
    b.result(0, 0, 0, Score("u0", 0.0, False, "second"), 1.0)
    assert b.scores()[0].reason == "ok"


def test_head_clock_starts_when_a_task_becomes_head():
    b = book(3, inflight=3)
    b.assign(0.0)
    assert b.next_deadline() == DEADLINE
    assert b.expired(DEADLINE - 0.1) == [] and b.expired(DEADLINE) == [0]
    b.result(0, 0, 0, ok("u0"), 7.0)  # t1 is the head from 7.0
    assert b.next_deadline() == 7.0 + DEADLINE and b.expired(DEADLINE + 1) == []


def test_timeout_scores_the_head_and_requeues_the_rest_uncharged():
    b = book(3, inflight=3)
    b.assign(0.0)
    assert b.timeout(0, 11.0) == 0
    s0 = b._scores[0]
    assert (s0.uid, s0.reward, s0.correct, s0.reason) == ("u0", 0.0, False, "timeout")
    assert b.workers[0].state == "draining"
    assert b.expired(100.0) == [] and b.next_deadline() is None
    b.lost(0, 0, 2, 11.5)  # the kill reaches the queued refs
    b.result(0, 0, 0, ok("u0"), 11.5)  # the head finished after all: the timeout stands
    b.lost(0, 0, 1, 11.6)
    assert b._scores[0].reason == "timeout"
    assert b.charged == [0, 0, 0] and b.pending == [1, 2]
    assert b.counts["timeouts"] == 1 and b.counts["resubmitted"] == 2 and b.counts["worker_deaths"] == 0


def test_queued_task_that_finished_before_the_kill_landed_keeps_its_score():
    b = book(2, inflight=2)
    b.assign(0.0)
    b.timeout(0, 11.0)
    b.result(0, 0, 1, ok("u1"), 11.2)
    b.lost(0, 0, 0, 11.3)
    assert b.done() and b.scores()[1].reason == "ok" and b.restarting() == [0]


def test_restarting_workers_get_no_work_until_they_answer():
    b = book(2, workers=2, inflight=1, restarting=(1,))
    assert b.assign(0.0) == [(0, 0, 0)]
    b.restarted(1)
    assert b.assign(0.0) == [(1, 0, 1)]


def test_deadline_ignores_idle_and_draining_workers():
    b = book(2, workers=3, inflight=1)
    assert b.assign(1.0) == [(0, 0, 0), (1, 0, 1)]  # worker 2 idle
    assert b.next_deadline() == 1.0 + DEADLINE
    b.lost(0, 0, 0, 2.0)  # worker 0 settles at once: restarting, no clock
    assert b.next_deadline() == 1.0 + DEADLINE and b.expired(100.0) == [1]
    b.result(1, 0, 1, ok("u1"), 3.0)
    assert b.next_deadline() is None and b.expired(100.0) == []


def test_other_workers_keep_going_while_one_drains():
    b = book(4, workers=2, inflight=1)
    assert b.assign(0.0) == [(0, 0, 0), (1, 0, 1)]
    b.lost(0, 0, 0, 1.0)  # worker 0 is settled at once: its only ref resolved
    assert b.pending == [0, 2, 3]
    b.result(1, 0, 1, ok("u1"), 1.0)
    assert b.assign(1.0) == [(1, 0, 0)]  # the retry goes first, to the worker that is up
    assert b.charged == [1, 0, 0, 0]


def test_scores_before_done_is_an_error():
    b = book(1)
    with pytest.raises(AssertionError, match="before every task is done"):
        b.scores()
