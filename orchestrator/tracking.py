"""How well a set-point held: tracking statistics of an entropy series against its target (issue 21).

Why a separate pure function: the acceptance rule ("within +-10% of the target for at least 80% of
the steps after it first reaches the band") is computed the same way by the plant test, the set-point
report and the comparison, and a rule that is recomputed three times drifts.

``tracking_stats(steps, entropy, target)``: the band is relative, |H - T| <= band * T per step (a
schedule's target moves the band with it). Before the first step in band the controller is still
pulling entropy from its start and nothing is scored; from that step on (it included) every step
counts, the ones that fall out of the band again included. Non-finite entropies (a step that measured
nothing) are skipped, not counted as in band.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence


def tracking_stats(steps: Sequence[int], entropy: Sequence[float], target: Sequence[float],
                   band: float = 0.1, required: float = 0.8) -> dict[str, Optional[float]]:
    """{first_in_band (a step, or None), scored (steps from then on), in_band, frac_in_band,
    mean_abs_error (nats), rms_error (nats), mean_rel_error, held (frac_in_band >= required)} over the
    scored steps; every figure is None (held False) when the series never reaches the band."""
    if not len(steps) == len(entropy) == len(target):
        raise ValueError(f"tracking_stats: {len(steps)} steps, {len(entropy)} entropies, {len(target)} targets")
    if not 0 < band < 1:
        raise ValueError(f"tracking_stats: band {band} must lie in (0, 1) (a fraction of the target)")
    pts = [(s, float(h), float(t)) for s, h, t in zip(steps, entropy, target) if math.isfinite(float(h))]
    if any(t <= 0 or not math.isfinite(t) for _, _, t in pts):
        raise ValueError("tracking_stats: targets must be finite and > 0 (the band is relative)")
    first = next((i for i, (_, h, t) in enumerate(pts) if abs(h - t) <= band * t), None)
    if first is None:
        return {"first_in_band": None, "scored": 0, "in_band": 0, "frac_in_band": None,
                "mean_abs_error": None, "rms_error": None, "mean_rel_error": None, "held": False}
    scored = pts[first:]
    errs = [h - t for _, h, t in scored]
    inside = sum(abs(h - t) <= band * t for _, h, t in scored)
    frac = inside / len(scored)
    return {"first_in_band": scored[0][0], "scored": len(scored), "in_band": inside, "frac_in_band": frac,
            "mean_abs_error": sum(abs(e) for e in errs) / len(errs),
            "rms_error": math.sqrt(sum(e * e for e in errs) / len(errs)),
            "mean_rel_error": sum(abs(h - t) / t for _, h, t in scored) / len(scored),
            "held": frac >= required}
