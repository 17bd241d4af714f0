"""bench/learner_interference.py's reading of /proc samples: only the intervals where the learner ran
at >= 1.5 cores count, and the learner and the sampler itself are not counted as others."""
from bench_modules import load_bench

li = load_bench("learner_interference")

HZ = li.HZ
LEARNER, ENGINE, RAYLET, SAMPLER = 10, 20, 30, 40


def snap(learner_s, engine_s, raylet_s, sampler_s):
    """CPU seconds so far -> the snapshot's ticks."""
    return {LEARNER: ("ray::LearnerActor.train_step", round(learner_s * HZ)),
            ENGINE: ("ray::RolloutWorker", round(engine_s * HZ)),
            RAYLET: ("/usr/bin/raylet --node", round(raylet_s * HZ)),
            SAMPLER: ("python bench/learner_interference.py job", round(sampler_s * HZ))}


def test_only_the_learners_busy_intervals_count():
    """Half-second samples: the rate is CPU seconds over the interval's length, and exactly 1.5
    cores counts."""
    snaps = [
        (0.0, snap(0, 0, 0, 0)),
        (0.5, snap(0.1, 0.45, 0.05, 0.05)),   # generate: learner 0.2 cores -> not counted
        (1.0, snap(1.05, 0.5, 0.1, 0.1)),     # train: learner 1.9 cores, engine 0.05, raylet 0.05
        (1.5, snap(1.8, 0.5, 0.25, 0.15)),    # train: learner exactly 1.5 cores, raylet 0.15
        (2.0, snap(2.5, 0.5, 0.3, 0.2)),      # learner 1.4 cores -> not counted
    ]
    wall, learner, others = li.train_phase_load(snaps, me={SAMPLER})
    assert wall == 1.0
    assert abs(learner - 1.7) < 1e-9
    assert {k: round(v, 6) for k, v in others.items()} == {"ray::RolloutWorker": 0.05,
                                                           "/usr/bin/raylet --node": 0.2}


def test_cpu_ticks_reads_utime_and_stime_after_a_name_with_spaces_and_parentheses():
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime ...: utime 700 and stime 55; the children's 9000 and 800 are not ours.
    stat = "4242 (ray::Learner (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 700 55 9000 800 20 0 5 0 1"
    assert li.cpu_ticks(stat) == 755


def test_a_process_that_appears_mid_interval_is_skipped_and_no_learner_means_no_phase():
    a = {ENGINE: ("ray::RolloutWorker", 0)}
    b = {ENGINE: ("ray::RolloutWorker", HZ), RAYLET: ("raylet", HZ)}
    wall, learner, others = li.train_phase_load([(0.0, a), (1.0, b)], me=set())
    assert (wall, learner, dict(others)) == (0.0, 0.0, {})


def test_load_specs_parse_to_busy_period_threads_and_bad_ones_name_the_spec():
    assert li.parse_load("0/0") == (0.0, 0.0, 0)          # quiet: no load process
    assert li.parse_load("1/10") == (1.0, 10.0, 1)        # 10% of one core
    assert li.parse_load("0/10x16") == (0.0, 10.0, 16)    # 16 threads waking every 10 ms, no work
    for bad in ("2/1", "1/0", "0/0x3", "-1/10"):
        try:
            li.parse_load(bad)
        except ValueError as e:
            assert repr(bad) in str(e) and "--loads" in str(e)
        else:
            raise AssertionError(f"{bad} accepted")
