"""orchestrator.recovery without Ray: the learner restarts are bounded by trainer.max_restarts, and a
dead rollout actor re-syncs the engines. (The real faults: tests/test_learner_recovery.py, test_async.py.)"""
import pytest

from forkrl.orchestrator.recovery import LearnerFailed, Recovery


def test_learner_restarts_until_the_bound_then_the_error_surfaces():
    calls = []
    rec = Recovery(2, restart_learner=lambda: calls.append("restart"), resync_rollout=lambda: calls.append("resync"))
    err = LearnerFailed("learner rank(s) [1] died (RayActorError)")
    rec.learner_failed(err, step=3)
    rec.learner_failed(err, step=5)
    assert calls == ["restart", "restart"] and rec.learner_restarts == 2
    with pytest.raises(LearnerFailed) as raised:
        rec.learner_failed(err, step=6)
    assert raised.value is err and calls == ["restart", "restart"] and rec.learner_restarts == 2


def test_no_restart_allowed_means_the_first_failure_ends_the_run():
    rec = Recovery(0, restart_learner=lambda: pytest.fail("restarted past max_restarts=0"), resync_rollout=lambda: None)
    with pytest.raises(LearnerFailed):
        rec.learner_failed(LearnerFailed("x"), step=1)


def test_a_dead_rollout_actor_resyncs_the_engines_every_time():
    calls = []
    rec = Recovery(0, restart_learner=lambda: None, resync_rollout=lambda: calls.append("resync"))
    rec.rollout_died(RuntimeError("actor died"), version=4)
    rec.rollout_died(RuntimeError("actor died"), version=4)
    assert calls == ["resync", "resync"] and rec.learner_restarts == 0
