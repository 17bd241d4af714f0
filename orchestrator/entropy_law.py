"""Fit the entropy-performance law R = -a exp(H) + b live (Cui et al., arXiv 2505.22617 §3).

The law is linear in x = exp(H), so ordinary least squares gives (a, b) in closed form; the
predicted ceiling, the reward at H = 0, is b - a. Returns None rather than a number when the data
cannot determine a line, so dashboards show "no fit" instead of a confident nonsense ceiling.

``predict_final`` makes the law a prediction (issue 21 item 5): fit on the first third of a run's
evaluations only, then predict the final held-out accuracy from the final measured entropy,
R_pred = -a exp(H_final) + b, and set it beside the measured one. The trainer's live fit
(``entropy_law/ceiling``) uses every evaluation so far, the endpoint included: a description, not a
prediction.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence


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


def predict_final(points: Sequence[tuple[int, float, float]], fraction: float = 1 / 3) -> dict[str, Any]:
    """Fit on the first ``ceil(fraction n)`` of the n evaluations, predict the last one's accuracy.

    ``points`` are (step, H, R) per evaluation: the policy entropy measured at that step and the
    held-out accuracy. Evaluations without a finite H or R (step 0 has no training entropy) are
    dropped first and n counts the rest, in step order. Returns {fit_steps (the steps the fit used,
    exactly), final_step, a, b, ceiling, r2, predicted_final, measured_final, error (predicted -
    measured), reason}; with too few points (the fit needs 3, and the final evaluation must lie
    outside them) the figures are nan and ``reason`` says why (None when the fit exists)."""
    if not 0 < fraction < 1:
        raise ValueError(f"predict_final: fraction {fraction} must lie in (0, 1)")
    pts = sorted((int(s), float(h), float(r)) for s, h, r in points
                 if math.isfinite(float(h)) and math.isfinite(float(r)))
    if len({s for s, _, _ in pts}) != len(pts):
        raise ValueError(f"predict_final: two evaluations at one step in {[s for s, _, _ in pts]}")
    used = pts[: math.ceil(fraction * len(pts))]
    out: dict[str, Any] = {"fit_steps": [s for s, _, _ in used], "final_step": pts[-1][0] if pts else None,
                           "a": math.nan, "b": math.nan, "ceiling": math.nan, "r2": math.nan,
                           "predicted_final": math.nan,
                           "measured_final": pts[-1][2] if pts else math.nan, "error": math.nan, "reason": None}
    if len(used) < 3 or len(used) == len(pts):
        out["reason"] = (f"{len(pts)} evaluations with an entropy: the first {len(used)} cannot fit a line "
                         f"(3 needed) and leave the final one out")
        return out
    fit = fit_entropy_law([h for _, h, _ in used], [r for _, _, r in used])
    if fit is None:
        out["reason"] = "the fit points' entropies are all equal: no slope"
        return out
    pred = -fit["a"] * math.exp(pts[-1][1]) + fit["b"]
    out.update(fit, predicted_final=pred, error=pred - out["measured_final"])
    return out
