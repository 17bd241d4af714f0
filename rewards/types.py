"""The records that cross the verifier boundary: what the orchestrator sends in and gets back.

Plain dataclasses on purpose: they travel through Ray's object store (pickle) and are logged; a test
checks that they pickle. Nothing here imports Ray, math-verify or the sandbox.

The boundary's two conversions live here too, so no caller builds a `Sample` by hand:
`samples_of_groups` turns the rollout's Episodes (with the `Reference` of each one's prompt) into
Samples, and `record_scores` copies each Score's verdict back into its Episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from forkrl.common.episode import Episode


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


@dataclass
class Reference:
    """What the responses to one prompt are judged against."""

    prompt: str
    """The prompt's text as the scorer sees it (the last user message)."""
    answer: Any
    """Ground truth (see `Sample.answer`)."""
    task: str = "math"


def samples_of_groups(groups: Sequence[Sequence[Episode]], refs: Sequence[Reference], tag: str) -> list[Sample]:
    """One Sample per Episode, groups in order, each judged against its group's Reference. `tag` makes
    the uids unique across the calls of a run ("s3r0/<prompt id>/<sample>")."""
    if len(groups) != len(refs):
        raise ValueError(f"{len(groups)} groups of episodes but {len(refs)} references: one per group")
    return [Sample(uid=f"{tag}/{ep.uid}", prompt=ref.prompt, response=ep.text, answer=ref.answer, task=ref.task,
                   finish_reason=ep.finish_reason)
            for ref, group in zip(refs, groups) for ep in group]


def record_scores(groups: Sequence[Sequence[Episode]], scores: Sequence[Score]) -> None:
    """Copy each Score's verdict into its Episode (in place; the order of `samples_of_groups`)."""
    episodes = [ep for group in groups for ep in group]
    if len(episodes) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(episodes)} episodes: one per episode")
    for ep, score in zip(episodes, scores):
        ep.reward, ep.correct, ep.extracted, ep.verdict = score.reward, score.correct, score.extracted, score.reason
