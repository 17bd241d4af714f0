"""orchestrator.step_metrics: the numbers a step reports, from hand-built Episodes and timings."""
import pytest

from forkrl.common.episode import Episode
from forkrl.orchestrator.step_metrics import Collected, PhaseTimer, rollout_metrics, staleness_metrics, step_metrics


def _ep(reward: float, version: int, n_tokens: int = 2, finish: str = "stop") -> Episode:
    return Episode(0, 0, [1], [7] * n_tokens, [-0.1] * n_tokens, finish, "", version, reward=reward,
                   correct=reward == 1.0, verdict="ok" if reward == 1.0 else "wrong_answer")


def test_rollout_metrics_count_everything_generated():
    got = Collected(seen=[[_ep(1.0, 3), _ep(0.0, 3, 4, "length")], [_ep(1.0, 2), _ep(1.0, 2)]], tokens=10,
                    seconds=4.0)
    m = rollout_metrics(got, version=4)
    assert m["reward/mean"] == 0.75 and m["reward/accuracy"] == 0.75
    assert m["reward/zero_variance_groups"] == 1.0  # the second group: both 1.0
    assert m["response/length_mean"] == 2.5 and m["response/truncated_frac"] == 0.25
    assert m["rollout/tokens_per_s"] == 2.5 and m["rollout/staleness"] == 2.0  # 4 - oldest version 2


def test_staleness_of_the_trained_groups_and_the_buffer():
    got = Collected(stale_dropped=1, in_flight=2)
    m = staleness_metrics([[_ep(1.0, 5)], [_ep(0.0, 3)]], got, version=6)
    assert m == {"staleness/dropped_groups": 1.0, "buffer/depth": 2.0, "staleness/min": 1.0,
                 "staleness/mean": 2.0, "staleness/max": 3.0}
    assert staleness_metrics([], got, version=6) == {"staleness/dropped_groups": 1.0, "buffer/depth": 2.0}


def test_busy_shares_are_per_role_and_capped_at_one():
    timer = PhaseTimer()
    timer.seconds = {"verify": 1.0, "push_weights": 0.5}
    got = Collected(busy_seconds=12.0)  # two actors, 6 s each, in a 10 s step
    m = step_metrics({"train/train_seconds": 2.0}, timer, 10.0, [[_ep(1.0, 0)]], got, version=3, num_actors=2,
                     learner_restarts=1, pool_stats={"samples": 8, "note": "x"})
    assert m["role/rollout_busy_frac"] == pytest.approx(0.6) and m["role/learner_busy_frac"] == pytest.approx(0.25)
    assert m["role/verifier_busy_frac"] == pytest.approx(0.1)
    assert m["time/verify"] == 1.0 and m["time/step"] == 10.0 and m["verify/samples"] == 8.0 and "verify/note" not in m
    assert m["step/groups_trained"] == 1.0 and m["step/weight_version"] == 3.0 and m["fault/learner_restarts"] == 1.0
    over = step_metrics({}, PhaseTimer(), 1.0, [], Collected(busy_seconds=5.0), 0, 1, 0, {})
    assert over["role/rollout_busy_frac"] == 1.0
