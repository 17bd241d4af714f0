"""Held-out pass@k: the unbiased estimator of Chen et al. 2021 and the metrics dict the trainer logs.

Why pass@k beside greedy pass@1: entropy collapse shows first as pass@k (the chance that one of k
samples at the training temperature is right) falling while greedy pass@1 still rises; the policy
concentrates on one answer per prompt and stops exploring the others.

What this does: ``pass_at_k(n, c, k)`` estimates, from n samples of which c are correct, the
probability that k samples drawn without replacement contain a correct one; ``group_correct`` turns
a flat list of scored samples into per-prompt lists; ``pass_at_k_metrics`` averages the estimate
over prompts into ``{"eval/pass@1": .., "eval/pass@8": ..}``.

What it does not do: generate or score (the trainer asks the rollout actors for
``eval.samples_per_prompt`` samples at the resolved temperature and the verifier pool scores them),
or greedy decoding (the trainer's greedy accuracy stays ``eval/accuracy``).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path


def resolve_sample_temperature(sample_temperature: float | None, rollout_temperature: float) -> float:
    """The temperature of the pass@k samples: ``eval.sample_temperature``, or when null the training
    temperature ``rollout.temperature`` (pass@k at the temperature the policy explores at is what
    entropy collapse shrinks)."""
    return rollout_temperature if sample_temperature is None else sample_temperature


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n - c, k) / C(n, k)``.

    Computed as ``1 - prod_{i = n-c+1}^{n} (1 - k / i)`` (Chen et al. 2021, Codex paper, Fig. 3):
    the binomials overflow floats for large n (C(200, 100) ~ 9e58) while the product of c factors in
    [0, 1] does not. When fewer than k samples are wrong (n - c < k) every k-subset holds a correct
    one, so the estimate is exactly 1, returned directly: the product would hold the factor
    1 - k / k = 0, but its factors 1 - k / i for i < k are negative and up to k - 1 in size, and for
    k above ~1030 their running product can overflow to inf before reaching it (inf * 0 = nan).
    pass@1 reduces to c / n, the mean per-sample accuracy.
    """
    if n < 1:
        raise ValueError(f"pass_at_k needs at least one sample, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"correct count c={c} must lie in [0, n={n}]")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must lie in [1, n={n}]: the estimator draws k of the n samples")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def group_correct(prompt_indices: Sequence[int], correct: Sequence[bool], num_prompts: int) -> list[list[bool]]:
    """Per-prompt correctness lists from a flat list of scored samples (in any order).

    ``prompt_indices[j]`` is the prompt sample j answers (the rollout's ``Generation.prompt_index``)
    and ``correct[j]`` its verdict. Every prompt must have at least one sample: a prompt that the
    engine dropped would otherwise vanish from the average and raise the score. An index outside
    [0, num_prompts), a negative one included, is an error (Python's wrap-around would credit the
    sample to a prompt counted from the end).
    """
    if len(prompt_indices) != len(correct):
        raise ValueError(f"{len(prompt_indices)} prompt indices for {len(correct)} verdicts")
    out: list[list[bool]] = [[] for _ in range(num_prompts)]
    for j, (p, ok) in enumerate(zip(prompt_indices, correct)):
        if not 0 <= p < num_prompts:
            raise ValueError(f"sample {j}: prompt index {p} outside [0, {num_prompts})")
        out[p].append(bool(ok))
    missing = [p for p, g in enumerate(out) if not g]
    if missing:
        raise ValueError(f"{len(missing)} prompts have no sample, e.g. {missing[:3]}")
    return out


def pass_at_k_metrics(correct: Sequence[Sequence[bool]], ks: Sequence[int], prefix: str = "eval") -> dict[str, float]:
    """``{f"{prefix}/pass@{k}": mean over prompts of pass_at_k(n_i, c_i, k)}`` for each k in ``ks``.

    Prompts are weighted equally whatever their sample count (the estimator is unbiased per prompt,
    so the mean is unbiased for the split). Every prompt needs n_i >= max(ks); the config rule
    ``eval_samples_cover_pass_k`` guarantees that before a run starts.
    """
    if not correct:
        raise ValueError("pass_at_k_metrics needs at least one prompt")
    out: dict[str, float] = {}
    for k in ks:
        per_prompt = [pass_at_k(len(g), sum(bool(x) for x in g), k) for g in correct]
        out[f"{prefix}/pass@{k}"] = sum(per_prompt) / len(per_prompt)
    return out


def problem_rows(step: int, greedy: Sequence[Sequence], sampled: Sequence[Sequence] | None = None) -> list[dict]:
    """One row per held-out prompt for ``<run dir>/eval_problems.jsonl``: ``{step, prompt_id, greedy}``
    (1 when the greedy answer was correct) plus ``n`` and ``c`` (samples, correct samples) when the
    pass@k samples were drawn. ``greedy`` and ``sampled`` are the evaluation's groups (one list of
    scored Episodes per prompt, in the same prompt order). The comparison bench reads these to pair
    methods on the same problems (bench/compare_read.py)."""
    if sampled is not None and len(sampled) != len(greedy):
        raise ValueError(f"problem_rows: {len(greedy)} greedy groups but {len(sampled)} sampled groups")
    rows = []
    for i, group in enumerate(greedy):
        row = {"step": step, "prompt_id": group[0].prompt_id, "greedy": int(bool(group[0].correct))}
        if sampled is not None:
            if sampled[i][0].prompt_id != row["prompt_id"]:
                raise ValueError(f"problem_rows: prompt {i} is {row['prompt_id']!r} greedy but "
                                 f"{sampled[i][0].prompt_id!r} sampled")
            row.update(n=len(sampled[i]), c=sum(bool(ep.correct) for ep in sampled[i]))
        rows.append(row)
    return rows


def append_problem_rows(path: Path, rows: Sequence[dict]) -> None:
    """Append `problem_rows` to a run's eval_problems.jsonl (a resumed run appends again; readers keep
    the last rows of a step)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
