"""Fit the entropy-performance law R = -a exp(H) + b live (Cui et al., arXiv 2505.22617 §3).

The law is linear in x = exp(H), so ordinary least squares gives (a, b) in closed form; the
predicted ceiling, the reward at H = 0, is b - a. Returns None rather than a number when the data
cannot determine a line, so dashboards show "no fit" instead of a confident nonsense ceiling.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence


def fit_entropy_law(H: Sequence[float], R: Sequence[float]) -> Optional[dict[str, float]]:
    """{a, b, ceiling, r2} or None for < 3 points, mismatched lengths, non-finite values, or
    constant entropy (all x equal: slope undetermined)."""
    if len(H) != len(R) or len(H) < 3:
        return None
    xs = [math.exp(float(h)) if math.isfinite(float(h)) and float(h) < 700 else math.nan for h in H]
    ys = [float(r) for r in R]
    if not all(math.isfinite(v) for v in xs + ys):
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 1e-12 * max(1.0, mx * mx) * n:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    b = my - slope * mx
    a = -slope
    ss_res = sum((y - (slope * x + b)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    # constant R (up to rounding) is fitted exactly by a = 0; 1 - 0/0 would be noise
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 1e-12 * max(1.0, my * my) * n else 1.0
    return {"a": a, "b": b, "ceiling": b - a, "r2": r2}
