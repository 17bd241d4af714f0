"""User reward functions, named by import path ("my_pkg.rewards:score").

Signature::

    def score(sample: forkrl.rewards.types.Sample) -> float | bool | forkrl.rewards.types.Score: ...

A float is the reward (correct = reward > 0); a bool is 1.0/0.0; a Score is used as-is (its uid is
forced to the sample's). The function runs inside the verifier actor: an exception becomes reward 0
with reason "crash: <exc>"; a hang or a process exit is the pool's business (timeout / restart).
"""

from __future__ import annotations

import importlib
import math
from typing import Callable

from .types import Sample, Score

UserFn = Callable[[Sample], "float | bool | Score"]


def load_function(path: str) -> UserFn:
    """Import "pkg.mod:fn"; errors here are configuration errors and propagate."""
    module_name, _, attr = path.partition(":")
    fn = importlib.import_module(module_name)
    for part in attr.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise TypeError(f"{path} is not callable")
    return fn


def to_score(sample: Sample, value: object) -> Score:
    """Normalise what a user function returned; a malformed value scores 0 with a reason."""
    if isinstance(value, Score):
        value.uid = sample.uid
        return value
    if isinstance(value, bool):
        return Score(sample.uid, float(value), value, "ok" if value else "wrong_answer")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return Score(sample.uid, float(value), value > 0, "ok")
    return Score(sample.uid, 0.0, False, f"bad_return: {type(value).__name__} {str(value)[:50]}")
