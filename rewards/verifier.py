"""The plain scoring core: one `Verifier` per worker process, driven directly by tests and wrapped by
`rewards.pool` for Ray. It routes each sample to the math, code or user scorer and turns every
exception into a zero reward with a logged reason, and bounds the built-in scorers' rewards to [0, 1]
(a last guard: the policy optimises whatever number comes out). It does not enforce the per-sample timeout for
in-process scorers (a thread cannot be stopped): the pool does, by killing the worker.
"""

from __future__ import annotations

import logging
import math

from .code_verifier import score_code
from .config import RewardConfig
from .math_verifier import score_math
from .types import Sample, Score
from .user_fn import load_function, to_score

log = logging.getLogger(__name__)


def _bounded(score: Score) -> Score:
    """Math and code rewards live in [0, 1]; NaN/inf (or a scorer bug) must never reach the learner."""
    r = score.reward
    if not (isinstance(r, (int, float)) and math.isfinite(r)):
        return Score(score.uid, 0.0, False, f"bad_reward: {r!r}"[:100], score.extracted)
    if 0.0 <= r <= 1.0:
        return score
    return Score(score.uid, min(1.0, max(0.0, float(r))), score.correct, score.reason, score.extracted)


def _crash(sample: Sample, exc: BaseException, where: str) -> Score:
    reason = f"crash: {type(exc).__name__}: {exc}"[:300]
    log.warning("reward %s failed on %s: %s", where, sample.uid, reason)
    return Score(sample.uid, 0.0, False, reason)


class Verifier:
    def __init__(self, cfg: RewardConfig):
        self.cfg = cfg
        self._fn = load_function(cfg.function) if cfg.function else None

    def _route(self, sample: Sample) -> str:
        if self.cfg.type != "auto":
            return self.cfg.type
        return sample.task if sample.task in ("math", "code") else "function"

    def score(self, sample: Sample) -> Score:
        """Never raises (for Exception); SystemExit/KeyboardInterrupt from user code also become a crash."""
        kind = self._route(sample)
        try:
            if kind == "math":
                return _bounded(score_math(sample, self.cfg.math))
            if kind == "code":
                return _bounded(score_code(sample, self.cfg.code, self.cfg.timeout_s))
        except Exception as e:
            return _crash(sample, e, kind)
        if self._fn is None:
            return Score(sample.uid, 0.0, False, f"unknown_task: {sample.task}")
        try:
            return to_score(sample, self._fn(sample))
        except BaseException as e:  # sys.exit() in user code must not end the worker
            return _crash(sample, e, "function")
