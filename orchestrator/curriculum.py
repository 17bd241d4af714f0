"""SENT's semantic-entropy curriculum (arXiv 2512.04359 §4): easy-to-hard by answer disagreement.

For each training prompt the current policy samples M answers; answers are clustered by verifier
equivalence (`rewards.answers_equivalent`), SE = -sum_k p_k log p_k, and training serves prompts
from low to high SE in stages. [INFERRED] M = 8 at T = 1 from the initial model and a median split
(two stages, as in the released scripts). Re-estimating on a schedule as the policy changes is
forkrl's extension (`reestimate_every_steps`).
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from forkrl.orchestrator.semantic_entropy import curriculum_order, semantic_entropy

log = logging.getLogger("forkrl.curriculum")


class CurriculumConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Order training prompts by semantic entropy, low to high.")
    samples: int = Field(8, ge=2, description="M answers sampled per prompt to estimate SE [INFERRED: 8].")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the estimate [INFERRED: 1].")
    num_stages: int = Field(2, ge=1, description="Stages (SE quantile bins); the released scripts use two.")
    reestimate_every_steps: int = Field(
        0, ge=0, description="Re-estimate SE with the current policy every K steps (0 = once, at the start).")
    max_prompts: int | None = Field(
        None, ge=1, description="Estimate on (and train on) at most this many training prompts; None = all.")


def estimate_order(rows: Sequence, sample_answers: Callable[[Sequence], list[list[str | None]]],
                   equivalent: Callable[[str, str], bool], num_stages: int) -> tuple[list[str], dict[str, float]]:
    """Returns the training order (uids, stages concatenated low to high) and SE per uid.

    `sample_answers(rows)` gives, per row, the extracted final answers of its M samples."""
    answers = sample_answers(rows)
    se = {row.uid: semantic_entropy(ans, equivalent) for row, ans in zip(rows, answers)}
    stages = curriculum_order(se, num_stages=num_stages)
    for i, stage in enumerate(stages):
        vals = [se[u] for u in stage]
        if vals:
            log.info("curriculum stage %d: %d prompts, SE %.3f..%.3f", i, len(vals), min(vals), max(vals))
    return [u for stage in stages for u in stage], se
