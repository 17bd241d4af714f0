"""The records that cross the verifier boundary: what the orchestrator sends in and gets back.

Plain dataclasses on purpose: they travel through Ray's object store (pickle) and are logged; a test
checks that they pickle. Nothing here imports Ray, math-verify or the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """One model response to score."""

    uid: str
    """Unique per sample (e.g. "step3/p5/s2"); the pool's bookkeeping and its results key on it."""
    prompt: str
    response: str
    answer: Any
    """Ground truth: a string for math; for code a dict (see `rewards.code_verifier`)."""
    task: str = "math"
    """"math" | "code" | anything a user function handles; routes the sample when the config type is auto."""
    finish_reason: str = "stop"
    meta: dict = field(default_factory=dict)


@dataclass
class Score:
    """The verdict on one sample. A failure of any kind is a reward of 0 with a reason, never an exception."""

    uid: str
    reward: float
    correct: bool
    reason: str
    """"ok", "wrong_answer", "no_answer", "timeout", "crash: <exc>", "tests_failed", ..."""
    extracted: str | None = None
    """The extracted final answer (math), so callers can cluster samples by meaning."""
