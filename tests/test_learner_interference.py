"""bench/learner_interference.py's reading of /proc samples: only the intervals where the learner ran
at >= 1.5 cores count, and the learner and the sampler itself are not counted as others."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import learner_interference as li  # noqa: E402

HZ = li.HZ
LEARNER, ENGINE, RAYLET, SAMPLER = 10, 20, 30, 40


def snap(learner_s, engine_s, raylet_s, sampler_s):
    """CPU seconds so far -> the snapshot's ticks."""
    return {LEARNER: ("ray::LearnerActor.train_step", round(learner_s * HZ)),
            ENGINE: ("ray::RolloutWorker", round(engine_s * HZ)),
            RAYLET: ("/usr/bin/raylet --node", round(raylet_s * HZ)),
            SAMPLER: ("python bench/learner_interference.py job", round(sampler_s * HZ))}


def test_only_the_learners_busy_intervals_count():
    snaps = [
        (0.0, snap(0, 0, 0, 0)),
        (1.0, snap(0.2, 0.9, 0.1, 0.1)),    # generate: learner 0.2 cores -> not counted
        (2.0, snap(2.1, 1.0, 0.2, 0.2)),    # train: learner 1.9 cores, engine 0.1, raylet 0.1
        (3.0, snap(4.0, 1.0, 0.5, 0.3)),    # train: learner 1.9 cores, raylet 0.3
        (4.0, snap(5.4, 1.0, 0.6, 0.4)),    # learner 1.4 cores -> not counted
    ]
    wall, learner, others = li.train_phase_load(snaps, me={SAMPLER})
    assert wall == 2.0
    assert abs(learner - 3.8) < 1e-9
    assert {k: round(v, 6) for k, v in others.items()} == {"ray::RolloutWorker": 0.1,
                                                           "/usr/bin/raylet --node": 0.4}


def test_a_process_that_appears_mid_interval_is_skipped_and_no_learner_means_no_phase():
    a = {ENGINE: ("ray::RolloutWorker", 0)}
    b = {ENGINE: ("ray::RolloutWorker", HZ), RAYLET: ("raylet", HZ)}
    wall, learner, others = li.train_phase_load([(0.0, a), (1.0, b)], me=set())
    assert (wall, learner, dict(others)) == (0.0, 0.0, {})
