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
