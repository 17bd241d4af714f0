"""Semantic entropy of a prompt's sampled answers, and the SENT low-to-high curriculum (§4).

Answers are clustered by an equivalence predicate (for verifiable tasks: the verifier's final-answer
equivalence); SE = -sum_k p_k log p_k with p_k = |C_k| / M. This module does not sample or verify.
"""
from __future__ import annotations

import math
from typing import Callable, Hashable, Optional, Sequence


def semantic_entropy(answers: Sequence[Optional[str]], equivalent: Callable[[str, str], bool]) -> float:
    """SE in nats. Each unparsable answer (None) is its own cluster: an answer the verifier cannot
    read agrees with nothing, so a prompt whose samples fail to parse counts as uncertain (high SE),
    never as confidently consistent. Clusters are greedy against each cluster's first member,
    i.e. `equivalent` is assumed transitive (true of final-answer equality)."""
    if not answers:
        raise ValueError("semantic_entropy needs at least one answer")
    reps: list[str] = []
    sizes: list[int] = []
    for a in answers:
        if a is None:
            sizes.append(1)
            reps.append(None)  # type: ignore[arg-type]
            continue
        for k, rep in enumerate(reps):
            if rep is not None and equivalent(a, rep):
                sizes[k] += 1
                break
        else:
            reps.append(a)
            sizes.append(1)
    m = len(answers)
    return float(-sum((s / m) * math.log(s / m) for s in sizes)) + 0.0


def curriculum_order(se_by_prompt: dict[Hashable, float], num_stages: int = 2) -> list[list[Hashable]]:
    """Stages of prompt ids from low to high SE; contiguous, near-equal sizes (2 stages = split at
    the median), together a partition of the input. Ties keep insertion order, so it is deterministic."""
    if num_stages < 1:
        raise ValueError(f"num_stages must be >= 1, got {num_stages}")
    ordered = sorted(se_by_prompt, key=lambda uid: se_by_prompt[uid])
    n = len(ordered)
    bounds = [round(i * n / num_stages) for i in range(num_stages + 1)]
    return [ordered[bounds[i] : bounds[i + 1]] for i in range(num_stages)]
