"""User reward functions by import path; this module also hosts the (mis)behaving functions the
Verifier and pool tests load by path (`HERE + ":misbehave"`)."""

import os
import time
from pathlib import Path

import pytest

from forkrl.rewards.config import RewardConfig
from forkrl.rewards.types import Sample, Score
from forkrl.rewards.user_fn import load_function, to_score
from forkrl.rewards.verifier import Verifier

HERE = __name__  # the import name pytest gave this module ("tests.test_rewards_userfns" or bare)


def length_reward(sample: Sample) -> float:
    return min(1.0, len(sample.response) / 10)


def misbehave(sample: Sample) -> float:
    """Behaviour chosen per sample by meta["mode"]; every call is logged to meta["log"] (if set)."""
    if log := sample.meta.get("log"):
        with open(log, "a") as f:
            f.write(sample.uid + "\n")
    mode = sample.meta.get("mode", "ok")
    if mode == "raise":
        raise ValueError("boom")
    if mode == "hang":
        while True:
            pass
    if mode == "sleep":
        time.sleep(60)
    if mode == "exit":
        os._exit(1)
    if mode == "exit_once":  # dies the first time only: the retry must then succeed
        marker = Path(sample.meta["marker"])
        if not marker.exists():
            marker.write_text("x")
            os._exit(1)
    if mode == "sysexit":
        raise SystemExit(0)
    if mode == "bad_return":
        return "yes"
    return 1.0


def test_load_function_and_errors():
    assert load_function(f"{HERE}:length_reward") is length_reward
    with pytest.raises(ModuleNotFoundError):
        load_function("no_such_pkg.mod:fn")
    with pytest.raises(AttributeError):
        load_function(f"{HERE}:nope")


def test_to_score_normalises_returns():
    s = Sample("u", "", "", None, "custom")
    assert to_score(s, 0.5) == Score("u", 0.5, True, "ok")
    assert to_score(s, False) == Score("u", 0.0, False, "wrong_answer")
    assert to_score(s, Score("other", 1.0, True, "ok")).uid == "u"
    assert to_score(s, float("nan")).reason.startswith("bad_return")


def test_verifier_turns_user_exceptions_into_zero(caplog):
    v = Verifier(RewardConfig(type="function", function=f"{HERE}:misbehave"))
    for mode in ("raise", "sysexit", "bad_return"):
        s = v.score(Sample(mode, "", "", None, "custom", meta={"mode": mode}))
        assert s.reward == 0.0 and not s.correct and s.uid == mode
    assert v.score(Sample("r", "", "", None, meta={"mode": "raise"})).reason == "crash: ValueError: boom"
    assert "boom" in caplog.text
    assert v.score(Sample("ok", "", "", None, "custom")).reward == 1.0


def test_verifier_routes_by_task_in_auto_mode():
    v = Verifier(RewardConfig(function=f"{HERE}:length_reward"))
    assert v.score(Sample("m", "", "\\boxed{4}", "4", "math")).reason == "ok"
    code = v.score(Sample("c", "", "def f():\n    return 1", {"tests": ["assert f() == 1"]}, "code"))
    assert code.reward == 1.0
    assert v.score(Sample("x", "", "12345", None, "length")).reward == 0.5
    assert Verifier(RewardConfig()).score(Sample("x", "", "", None, "poetry")).reason == "unknown_task: poetry"
    bad = Verifier(RewardConfig()).score(Sample("c", "", "x", "not a dict", "code"))
    assert bad.reward == 0.0 and bad.reason.startswith("crash: TypeError")
