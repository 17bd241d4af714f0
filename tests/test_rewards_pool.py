"""The Ray verifier pool on real local actors: crashes, hangs and killed workers cost one sample's
reward at most, and every sample is scored exactly once."""

import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from forkrl.rewards.config import RewardConfig  # noqa: E402
from forkrl.rewards.pool import VerifierPool  # noqa: E402
from forkrl.rewards.types import Sample  # noqa: E402

import test_rewards_userfns as fns  # noqa: E402  (tests/ is on sys.path: pytest rootdir mode)

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    path = os.pathsep.join([str(TESTS), *sys.path])  # workers import the test functions
    # the workers' own temp dir: sandbox dirs (and sweeps of them) stay inside what this module started
    tmpdir = str(tmp_path_factory.mktemp("pool_tmp"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "TMPDIR": tmpdir}})
    yield tmpdir
    ray.shutdown()


def _cfg(**kw):
    # timeout well above the 1-2 s Ray takes here to report a dead worker, else a death looks like a hang
    base = dict(function=f"{fns.HERE}:misbehave", num_workers=2, timeout_s=3.0, kill_grace_s=1.0)
    return RewardConfig(**{**base, **kw})


def test_math_and_order(ray_local):
    pool = VerifierPool(RewardConfig(num_workers=2))
    samples = [Sample(f"m{i}", "", f"\\boxed{{{i}}}", str(i if i % 3 else -1)) for i in range(20)]
    scores = pool.score(samples)
    assert [s.uid for s in scores] == [s.uid for s in samples]
    assert [s.correct for s in scores] == [i % 3 != 0 for i in range(20)]
    st = pool.stats()
    assert st["samples"] == 20 and st["samples_per_s"] > 0
    assert pool.stats()["samples"] == 0  # counters reset on read
    pool.shutdown()


def test_refusals_are_counted_by_reason(ray_local):
    pool = VerifierPool(RewardConfig(num_workers=1))
    samples = [Sample("gold-missing", "", "\\boxed{None}", None), Sample("broken-box", "", "\\boxed{12 then 3", "3"),
               Sample("fine", "", "\\boxed{3}", "3")]
    assert [s.reward for s in pool.score(samples)] == [0.0, 0.0, 1.0]
    st = pool.stats()
    assert (st["data_errors"], st["bad_boxes"], st["user_errors"], st["samples"]) == (1, 1, 0, 3)
    pool.shutdown()


def test_pool_survives_crash_hang_exit_and_scores_each_once(ray_local, tmp_path):
    log = tmp_path / "calls.log"
    modes = ["ok"] * 12 + ["raise", "hang", "sleep", "exit", "exit_once", "sysexit"]
    samples = [Sample(f"s{i}/{m}", "", "", None, "custom", meta={"mode": m, "log": str(log), "marker": str(tmp_path / f"mk{i}")})
               for i, m in enumerate(modes)]
    pool = VerifierPool(_cfg())
    scores = pool.score(samples)
    assert [s.uid for s in scores] == [s.uid for s in samples]
    by_mode = {m: s for m, s in zip(modes, scores)}
    assert all(s.reward == 1.0 for m, s in zip(modes, scores) if m == "ok")
    assert by_mode["raise"].reason == "crash: ValueError: boom"
    assert by_mode["hang"].reason == "timeout" and by_mode["sleep"].reason == "timeout"
    assert by_mode["exit"].reason == "crash: verifier worker died"
    assert by_mode["exit_once"].reward == 1.0  # retried once on the restarted worker
    assert by_mode["sysexit"].reward == 0.0
    calls = Counter(log.read_text().split())
    assert all(calls[s.uid] == 1 for m, s in zip(modes, samples) if m in ("ok", "raise"))
    assert calls[samples[modes.index("exit")].uid] == 2  # first try + exactly one retry
    assert calls[samples[modes.index("exit_once")].uid] == 2  # died once, then scored on the restarted worker
    assert all(calls[s.uid] == 1 for m, s in zip(modes, samples) if m in ("hang", "sleep"))  # timeouts never rerun
    st = pool.stats()
    assert (st["timeouts"], st["worker_deaths"], st["retries"]) == (2, 3, 2)
    assert st["user_errors"] >= 2  # raise, sysexit (and the exit that died twice)
    # the pool still works after all that
    assert [s.reward for s in pool.score(samples[:4])] == [1.0] * 4
    pool.shutdown()


def test_actor_killed_from_outside_loses_nothing(ray_local, tmp_path):
    pool = VerifierPool(_cfg())
    ray.kill(pool._actors[0].handle, no_restart=False)
    samples = [Sample(f"k{i}", "", "", None, "custom") for i in range(10)]
    scores = pool.score(samples)
    assert [s.reward for s in scores] == [1.0] * 10
    pool.shutdown()


def test_replaces_actor_past_max_restarts(ray_local, tmp_path):
    pool = VerifierPool(_cfg(max_restarts=0, num_workers=1))
    samples = [Sample("e", "", "", None, "custom", meta={"mode": "exit"}), Sample("ok", "", "", None, "custom")]
    scores = pool.score(samples)
    assert [s.reward for s in scores] == [0.0, 1.0]
    assert pool.stats()["replaced"] >= 1
    pool.shutdown()


def test_dirs_left_by_a_killed_sandbox_owner_are_swept_by_the_next_worker(ray_local, monkeypatch):
    # named as the fallback sandbox names its dirs: owner pid + start time; the start time "0" says the
    # owner is gone (a live process with our pid started at another time), exactly as after a kill
    stale = Path(ray_local) / f"forkrl-sbx-{os.getpid()}-0-pooltest"
    (stale / "deep" / "er").mkdir(parents=True)
    pool = VerifierPool(RewardConfig(num_workers=1))
    assert not stale.exists()
    stale.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", ray_local)  # the driver sweeps its own temp dir at shutdown
    pool.shutdown()
    assert not stale.exists()


def test_bad_function_path_fails_at_construction(ray_local):
    with pytest.raises(ray.exceptions.RayActorError, match="no_such_module"):
        VerifierPool(RewardConfig(function="no_such_module:fn", num_workers=1))
