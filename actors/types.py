"""Records the rollout role hands to the orchestrator: token ids and sampling log-probs, no objects."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Generation:
    """One sampled response. `logprobs[i]` is log pi_old(response_ids[i]) under the sampling
    distribution actually used (temperature applied), so the learner can use it as the behaviour policy."""

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (EOS / stop string) or "length" (hit max_new_tokens)
    text: str
    weight_version: int

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"
