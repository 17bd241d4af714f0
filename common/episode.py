"""One sampled response, end to end: the record every role fills in turn.

The rollout engine creates an `Episode` (token ids, sampling log-probs, finish reason, the weight
version that generated it); the orchestrator stamps the prompt's id, the verifier boundary
(rewards.types.record_scores) copies the verdict into it, and the orchestrator writes its advantage;
packing turns Episodes into the learner's TrainBatch, keeping each row's weight version. A `Group` is
the G Episodes of one prompt: advantages are normalised within it. Plain data on purpose (no torch,
no Ray): it pickles across Ray and tests build it by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class Episode:
    prompt_index: int
    """Position of the prompt in the request that produced it (the rollout's numbering)."""
    sample_index: int
    """Which of the prompt's G samples this is (0..G-1)."""
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    """logprobs[i] = log pi_behaviour(response_ids[i]) under the sampling distribution actually used
    (temperature applied): the behaviour policy of off-policy correction."""
    finish_reason: str
    """"stop" (EOS / stop string) or "length" (hit max_new_tokens)."""
    text: str
    weight_version: int
    """The policy version whose weights generated it (the engine's version when the request ran)."""
    prompt_id: str = ""
    """The orchestrator's id of the prompt row (PromptRow.uid); set when the group is formed."""
    reward: Optional[float] = None
    """The verifier's raw reward (rewards.types.Score.reward: the math/code scorers' value in [0, 1], or
    what a user reward function returned); None until verified. No shaping is written here: the overlong
    penalty (algorithm.overlong.mode='penalty') is added only to the rewards the advantages are
    computed from (Trainer.advantages), so reward/* metrics and dynamic sampling see the raw score."""
    correct: Optional[bool] = None
    extracted: Optional[str] = None
    """The answer the verifier extracted (math), so samples can be clustered by meaning."""
    verdict: str = ""
    """The verifier's reason: "ok", "wrong_answer", "timeout", "crash: ...", ..."""
    advantage: Optional[float] = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def uid(self) -> str:
        return f"{self.prompt_id}/{self.sample_index}"


Group = list[Episode]
"""The G Episodes sampled for one prompt, in sample order."""


def group_by_prompt(episodes: list[Episode], prompt_ids: list[str]) -> list[Group]:
    """Split a request's Episodes into one Group per prompt (in prompt order) and stamp each Episode
    with its prompt's id. Every prompt must have at least one Episode.

    A prompt_index outside [0, len(prompt_ids)) is an error, a negative one included: Python's
    wrap-around would file the Episode under a prompt counted from the end, verify it against
    another prompt's answer and train it with that group's advantage."""
    groups: list[Group] = [[] for _ in prompt_ids]
    for ep in episodes:
        if not 0 <= ep.prompt_index < len(prompt_ids):
            raise ValueError(f"episode sample_index {ep.sample_index} has prompt_index {ep.prompt_index}, "
                             f"outside the request's {len(prompt_ids)} prompts [0, {len(prompt_ids)})")
        ep.prompt_id = prompt_ids[ep.prompt_index]
        groups[ep.prompt_index].append(ep)
    empty = [prompt_ids[i] for i, g in enumerate(groups) if not g]
    if empty:
        raise ValueError(f"no episodes for prompt(s) {empty[:3]}")
    for g in groups:
        g.sort(key=lambda e: e.sample_index)
    return groups
