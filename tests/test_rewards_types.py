"""The verifier contract: records pickle (they cross Ray), the config rejects bad input by field."""

import pickle

import pytest
from pydantic import ValidationError

from forkrl.rewards.config import RewardConfig
from forkrl.rewards.types import Sample, Score


def test_records_pickle_round_trip():
    s = Sample("step1/p0/s0", "q", "a", {"test": "t", "entry_point": "f"}, "code", "length", {"k": [1]})
    sc = Score("step1/p0/s0", 0.5, False, "tests_failed", "\\frac12")
    assert pickle.loads(pickle.dumps(s)) == s
    assert pickle.loads(pickle.dumps(sc)) == sc
    cfg = RewardConfig(num_workers=3)
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_config_defaults_work_for_math():
    cfg = RewardConfig()
    assert (cfg.type, cfg.num_workers, cfg.cpus_per_worker) == ("auto", 2, 0.25)


@pytest.mark.parametrize("bad,field", [
    ({"num_workers": 0}, "num_workers"),
    ({"unknown": 1}, "unknown"),
    ({"type": "function"}, "function"),
    ({"function": "no_colon"}, "function"),
    ({"code": {"memory_mb": 1}}, "memory_mb"),
    ({"math": {"typo": 1}}, "typo"),
    ({"timeout_s": 0}, "timeout_s"),
])
def test_config_rejects(bad, field):
    with pytest.raises(ValidationError, match=field):
        RewardConfig(**bad)


def _episode(prompt_id: str, sample: int, text: str, finish: str = "stop"):
    from forkrl.common.episode import Episode

    return Episode(0, sample, [1], [2], [-0.1], finish, text, 3, prompt_id=prompt_id)


def test_episodes_become_samples_judged_against_their_own_groups_reference():
    from forkrl.rewards.types import Reference, samples_of_groups

    groups = [[_episode("r0", 0, "a0"), _episode("r0", 1, "a1", "length")], [_episode("r7", 0, "b0")]]
    refs = [Reference("what is 1+1?", "2"), Reference("code me", {"test": "t"}, "code")]
    got = samples_of_groups(groups, refs, "s3r0")
    assert got == [Sample("s3r0/r0/0", "what is 1+1?", "a0", "2", "math", "stop"),
                   Sample("s3r0/r0/1", "what is 1+1?", "a1", "2", "math", "length"),
                   Sample("s3r0/r7/0", "code me", "b0", {"test": "t"}, "code", "stop")]
    with pytest.raises(ValueError, match="2 groups of episodes but 1 references"):
        samples_of_groups(groups, refs[:1], "s3r0")


def test_scores_land_on_their_episodes_in_order():
    from forkrl.rewards.types import record_scores

    groups = [[_episode("r0", 0, "a0"), _episode("r0", 1, "a1")], [_episode("r7", 0, "b0")]]
    record_scores(groups, [Score("u0", 1.0, True, "ok", "2"), Score("u1", 0.0, False, "wrong_answer", "3"),
                           Score("u2", 0.5, False, "tests_failed")])
    got = [(ep.reward, ep.correct, ep.extracted, ep.verdict) for g in groups for ep in g]
    assert got == [(1.0, True, "2", "ok"), (0.0, False, "3", "wrong_answer"), (0.5, False, None, "tests_failed")]
    with pytest.raises(ValueError, match="2 scores for 3 episodes"):
        record_scores(groups, [Score("u0", 1.0, True, "ok"), Score("u1", 1.0, True, "ok")])
