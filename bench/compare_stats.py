"""Statistics of the method comparison (issue 21 items 2, 3, 6): paired bootstrap intervals of a
difference, per-problem pass@k, the entropy ratio to GRPO with a seed band, and the plateau rule.

Why paired, and why both ways: two methods are evaluated on the same held-out problems with the
same seeds, and most of the variance of an accuracy is between problems (some are easy) and between
seeds (a seed's run can land low). A difference of two independent intervals counts that variance
twice; pairing problem with problem and seed with seed cancels what the methods share. So the
interval resamples seeds and problems, the same indices for both methods (a two-way bootstrap of
the mean difference), and every "equal within noise" the report prints is "this interval holds 0".

Pure functions over plain lists / arrays; nothing here reads files or runs jobs.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

from forkrl.orchestrator.evaluation import pass_at_k


def per_problem_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> list[float]:
    """The unbiased pass@k estimate of each problem from its (n samples, c correct) (Chen et al. 2021;
    ``forkrl.orchestrator.evaluation.pass_at_k``, the estimator the trainer logs)."""
    return [pass_at_k(n, c, k) for n, c in counts]


def paired_bootstrap(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], n_boot: int = 4000,
                     level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean of a - b and its percentile bootstrap interval, paired over seeds and problems.

    ``a[s][p]`` and ``b[s][p]`` are method A's and B's score (0/1 greedy, or a per-problem pass@k) of
    problem p in the run with seed s: the same seeds in the same order, the same problems in the same
    order. Each replicate draws seeds with replacement and, independently, problems with replacement,
    and averages the differences over the drawn (seed, problem) cells; the interval is the replicates'
    (1 - level) / 2 and (1 + level) / 2 quantiles. With one seed it is the ordinary paired bootstrap
    over problems. With 3 seeds the seed draw has only 10 distinct multisets, so the seed part of the
    interval is coarse: a floor on the noise, not a fine estimate of it. Returns {diff, lo, hi, seeds,
    problems}."""
    da, db = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if da.ndim != 2 or da.shape != db.shape or da.size == 0:
        raise ValueError(f"paired_bootstrap: a and b must be [seeds][problems] of one shape, got "
                         f"{da.shape} and {db.shape}")
    if not np.isfinite(da).all() or not np.isfinite(db).all():
        raise ValueError("paired_bootstrap: a non-finite score")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"paired_bootstrap: level {level} must lie in (0, 1), n_boot {n_boot} >= 1")
    d = da - db
    s, p = d.shape
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for i in range(n_boot):
        rows = rng.integers(0, s, size=s)
        cols = rng.integers(0, p, size=p)
        reps[i] = d[np.ix_(rows, cols)].mean()
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": float(d.mean()), "lo": float(lo), "hi": float(hi), "seeds": s, "problems": p}


def verdict(ci: Mapping[str, float]) -> str:
    """better / worse when the interval of the difference excludes 0, else equal within noise."""
    if ci["lo"] > 0:
        return "better"
    if ci["hi"] < 0:
        return "worse"
    return "equal within noise (the interval holds 0)"


def describe(ci: Mapping[str, float], label: str) -> str:
    """One line: the difference, its interval, what it rests on, and the verdict."""
    return (f"{label} {ci['diff']:+.3f} [95% CI {ci['lo']:+.3f}, {ci['hi']:+.3f}; {ci['seeds']} seed(s) x "
            f"{ci['problems']} problems, paired]: {verdict(ci)}")


def entropy_ratio_curve(method: Mapping[int, Mapping[int, float]], base: Mapping[int, Mapping[int, float]]
                        ) -> list[tuple[int, float, float, float, int]]:
    """Seed-paired ratio H_method / H_base at the same step: [(step, mean, min, max, seeds)].

    ``method[seed][step]`` and ``base[seed][step]`` are the policy entropies. Only seeds both have
    are used, each method seed against the baseline run with the same seed; a step counts where all
    of them have a finite, positive baseline entropy. The band is the min..max over seeds (with 3
    seeds a range says more than a standard error of 3 numbers)."""
    seeds = sorted(set(method) & set(base))
    if not seeds:
        return []
    steps = sorted(set.intersection(*(set(method[s]) & set(base[s]) for s in seeds)))
    out = []
    for step in steps:
        r = [method[s][step] / base[s][step] for s in seeds
             if math.isfinite(base[s][step]) and base[s][step] > 0 and math.isfinite(method[s][step])]
        if len(r) == len(seeds):
            out.append((step, sum(r) / len(r), min(r), max(r), len(r)))
    return out


def plateau_step(entropy: Mapping[int, float], window: int = 10, rel: float = 0.05) -> Optional[int]:
    """The first step s at which the entropy has plateaued: the mean over steps (s - window, s] differs
    from the mean over the window before it by less than ``rel`` of the earlier mean. None before
    2 x window steps with an entropy, or when it is still moving. Steps without a finite entropy are
    skipped (the windows are over the measured steps)."""
    pts = sorted((s, h) for s, h in entropy.items() if math.isfinite(h))
    for i in range(2 * window, len(pts) + 1):
        prev = sum(h for _, h in pts[i - 2 * window:i - window]) / window
        last = sum(h for _, h in pts[i - window:i]) / window
        if prev > 0 and abs(last - prev) < rel * prev:
            return pts[i - 1][0]
    return None
