"""Entropy as a set-point: a PI controller that moves one loss coefficient to hold policy entropy.

Why: Clip-Cov, KL-Cov, the forking mask and the entropy bonus each slow entropy collapse by an amount
that depends on model, task and batch size, so a fixed coefficient either does nothing or
over-corrects (Cui et al. report the entropy bonus brittle: 1e-4..1e-3 no effect, 0.01 explodes).
Closing the loop lets the run state the entropy it wants (a constant or a schedule over steps) and
lets the controller find the coefficient, within bounds the user sets.

What this does:
- ``EntropyControlConfig``: the ``algorithm.entropy_control`` section (target, gains, actuator, bounds).
- ``EntropyController``: a pure PI controller with anti-windup. ``update(step, measured_entropy)``
  returns the actuator's value for the next training step; ``state_dict`` / ``load_state_dict``
  carry it through checkpoints; ``metrics()`` gives the ``entropy_control/*`` gauges.
- ``actuator_value`` / ``with_actuator`` read and set the actuator on a (frozen) loss config,
  ``actuator_problem`` says why an actuator does not exist on a loss (the config rule uses it).

What it does not do: measure entropy (the learner reports ``policy/entropy``, the token-mean entropy of
its training forward pass) or hand the new loss config to the learner (the trainer does).

Controller, in units of the actuator's range so that one pair of gains suits every actuator:
``x = (u - lo) / (hi - lo)`` in [0, 1], error ``e = target(step) - H`` (nats; > 0 when entropy is too
low), ``x = clamp(x0 + s (kp e + ki I), 0, 1)`` with ``I`` the sum of past errors (one update per
step) and ``x0`` the loss config's own value, so the first output equals the recipe's coefficient when
the error is 0 (bumpless start). ``s`` is +1 for actuators that raise entropy when raised (KL-Cov beta,
Clip-Cov ratio, entropy bonus) and -1 for forking rho (fewer updated tokens leave the low-entropy
majority alone: [INFERRED] from Wang et al.'s finding that training only the top 20% keeps entropy
higher than all tokens). Anti-windup: the integral grows only until the output reaches the bound
the error pushes it towards (the part of the error beyond it is not integrated, and nothing already
integrated is unwound), and the integral term alone is kept within the range, so after a long
saturation the actuator leaves the bound as soon as the error changes sign.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator, model_validator

Actuator = Literal["kl_cov_beta", "clip_cov_ratio", "forking_rho", "entropy_coef"]

DIRECTION: dict[str, int] = {"kl_cov_beta": 1, "clip_cov_ratio": 1, "forking_rho": -1, "entropy_coef": 1}
"""Sign of d(entropy)/d(actuator): raising it raises entropy (+1) or lowers it (-1)."""

_HARD_LIMITS: dict[str, tuple[float, float, bool]] = {
    # actuator -> (lowest, highest, lowest excluded); the loss config's own Field bounds
    "kl_cov_beta": (0.0, math.inf, False),
    "clip_cov_ratio": (0.0, 1.0, False),
    "forking_rho": (0.0, 1.0, True),
    "entropy_coef": (0.0, math.inf, False),
}

Entropy = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A target entropy in nats: finite (an infinite target makes the error, hence the actuator, inf or nan)."""
SchedulePoint = tuple[Annotated[int, Field(ge=0)], Entropy]


class EntropyControlConfig(BaseModel):
    """``algorithm.entropy_control``: hold the policy entropy at a target by moving one loss coefficient."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Adjust the actuator every step from the measured policy entropy.")
    target: Union[Entropy, list[SchedulePoint]] = Field(1.0, description=(
        "Target token-mean policy entropy in nats (the learner's policy/entropy): a constant, or a "
        "schedule [[step, value], ...] with increasing steps, linearly interpolated between points and "
        "held flat before the first and after the last."))
    actuator: Actuator = Field("kl_cov_beta", description=(
        "Loss coefficient the controller moves: kl_cov_beta (learner.loss.beta, type kl_cov), "
        "clip_cov_ratio (learner.loss.ratio, type clip_cov), forking_rho (learner.loss.forking.rho, any "
        "type with forking set) or entropy_coef (learner.loss.entropy_coef, any type)."))
    bounds: Optional[tuple[FiniteFloat, FiniteFloat]] = Field(None, description=(
        "[min, max] of the actuator, required when enabled: the controller never leaves them. Finite, and "
        "within the loss field's own limits (rho in (0, 1], ratio in [0, 1], beta and entropy_coef >= 0)."))
    kp: float = Field(0.5, ge=0, allow_inf_nan=False, description=(
        "Proportional gain: fraction of the bounds' range moved per nat of error."))
    ki: float = Field(0.1, ge=0, allow_inf_nan=False, description=(
        "Integral gain: fraction of the range moved per nat of error summed over steps (removes the "
        "steady-state offset a P controller leaves)."))

    @field_validator("target")
    @classmethod
    def _schedule_ordered(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("a target schedule needs at least one [step, value] point")
            steps = [s for s, _ in v]
            if any(b <= a for a, b in zip(steps, steps[1:])):
                raise ValueError(f"target schedule steps must increase strictly, got {steps}")
        return v

    @model_validator(mode="after")
    def _bounds_valid(self) -> "EntropyControlConfig":
        if self.bounds is None:
            if self.enabled:
                raise ValueError(f"bounds: enabled entropy control needs [min, max] of {self.actuator}")
            return self
        lo, hi = self.bounds
        if not lo < hi:
            raise ValueError(f"bounds: min {lo} must be < max {hi}")
        low, high, open_low = _HARD_LIMITS[self.actuator]
        if lo < low or (open_low and lo == low) or hi > high:
            left = "(" if open_low else "["
            raise ValueError(f"bounds [{lo}, {hi}] leave {self.actuator}'s range {left}{low}, {high}]")
        return self


def target_at(target: Union[float, list[tuple[int, float]]], step: int) -> float:
    """The target entropy at ``step``: the constant, or the schedule interpolated linearly.

    At a schedule point the value is the point's own, exactly: a point is answered by the segment it
    starts (or, the last one, by itself), where the interpolation adds an exact 0; from the segment it
    ends, v0 + (v1 - v0) (s1 - s0) / (s1 - s0) can miss v1 by an ulp or two."""
    if not isinstance(target, list):
        return float(target)
    step = max(step, target[0][0])  # held flat before the first point
    for (s0, v0), (s1, v1) in zip(target, target[1:]):
        if step < s1:
            return v0 + (v1 - v0) * (step - s0) / (s1 - s0)
    return float(target[-1][1])


# ---- the actuator on a loss config -----------------------------------------------------------------


def actuator_problem(loss: Any, actuator: str) -> Optional[str]:
    """Why ``actuator`` does not exist on this loss config, or None."""
    if actuator == "kl_cov_beta" and loss.type != "kl_cov":
        return f"needs learner.loss.type='kl_cov' (got {loss.type!r})"
    if actuator == "clip_cov_ratio" and loss.type != "clip_cov":
        return f"needs learner.loss.type='clip_cov' (got {loss.type!r})"
    if actuator == "forking_rho" and loss.forking is None:
        return "needs learner.loss.forking set (the forking mask is off)"
    return None


def actuator_value(loss: Any, actuator: str) -> float:
    """The actuator's current value on a loss config (the controller's starting point)."""
    problem = actuator_problem(loss, actuator)
    if problem:
        raise ValueError(f"actuator {actuator!r} {problem}")
    if actuator == "kl_cov_beta":
        return float(loss.beta)
    if actuator == "clip_cov_ratio":
        return float(loss.ratio)
    if actuator == "forking_rho":
        return float(loss.forking.rho)
    return float(loss.entropy_coef)


def with_actuator(loss: Any, actuator: str, value: float) -> Any:
    """A copy of the (frozen) loss config with the actuator set to ``value``; the input is unchanged.

    ``model_copy`` skips validation, so the controller's bounds (checked against the field's limits
    by EntropyControlConfig) are what keep the value legal.
    """
    problem = actuator_problem(loss, actuator)
    if problem:
        raise ValueError(f"actuator {actuator!r} {problem}")
    if actuator == "kl_cov_beta":
        return loss.model_copy(update={"beta": float(value)})
    if actuator == "clip_cov_ratio":
        return loss.model_copy(update={"ratio": float(value)})
    if actuator == "forking_rho":
        return loss.model_copy(update={"forking": loss.forking.model_copy(update={"rho": float(value)})})
    return loss.model_copy(update={"entropy_coef": float(value)})


# ---- the controller --------------------------------------------------------------------------------


class EntropyController:
    """PI controller with anti-windup from measured entropy to an actuator value (see module doc).

    Pure: no clock, no I/O; its whole state is the error integral, the last output and the update
    count, which ``state_dict`` returns for the trainer's checkpoint.
    """

    def __init__(self, cfg: EntropyControlConfig, initial: float):
        if cfg.bounds is None:
            raise ValueError("EntropyController needs cfg.bounds")
        self.cfg = cfg
        self.lo, self.hi = cfg.bounds
        self.sign = DIRECTION[cfg.actuator]
        self.x0 = min(max((initial - self.lo) / (self.hi - self.lo), 0.0), 1.0)
        self.integral = 0.0
        self.value = self.lo + (self.hi - self.lo) * self.x0
        self.updates = 0
        self._last = {"target": math.nan, "error": math.nan}

    def update(self, step: int, measured_entropy: float) -> float:
        """The actuator value for the next step, from the entropy measured at ``step``.

        A non-finite measurement (a step without loss tokens measures nothing) holds the actuator and
        the integral as they are.
        """
        target = target_at(self.cfg.target, step)
        if not math.isfinite(measured_entropy):
            self._last = {"target": target, "error": math.nan}
            return self.value
        e = target - measured_entropy
        kp, ki, s = self.cfg.kp, self.cfg.ki, self.sign
        if ki > 0 and e != 0:
            # Integrate e, or only the part of it that brings the output to the bound it is pushed
            # towards (never unwinding what is already there): the integral stops at saturation.
            bound = 1.0 if s * e > 0 else 0.0
            before = self.x0 + s * (kp * e + ki * self.integral)
            part = min(max((bound - before) / (s * ki * e), 0.0), 1.0)
            self.integral += part * e
            # the integral term alone stays inside the range: x0 + s ki I in [0, 1]
            lo_i, hi_i = sorted(((0.0 - self.x0) / (s * ki), (1.0 - self.x0) / (s * ki)))
            self.integral = min(max(self.integral, lo_i), hi_i)
        x = min(max(self.x0 + s * (kp * e + ki * self.integral), 0.0), 1.0)
        self.value = self.lo + (self.hi - self.lo) * x
        self.updates += 1
        self._last = {"target": target, "error": e}
        return self.value

    def metrics(self) -> dict[str, float]:
        """Gauges of the last update: target, error (target - measured, nats) and the actuator value."""
        return {"entropy_control/target": self._last["target"], "entropy_control/error": self._last["error"],
                "entropy_control/actuator": self.value}

    def state_dict(self) -> dict[str, Any]:
        return {"integral": self.integral, "value": self.value, "updates": self.updates,
                "actuator": self.cfg.actuator}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["actuator"] != self.cfg.actuator:
            raise ValueError(f"entropy controller state is for actuator {state['actuator']!r}, this run "
                             f"controls {self.cfg.actuator!r}")
        self.integral = float(state["integral"])
        self.value = min(max(float(state["value"]), self.lo), self.hi)  # bounds may have been narrowed
        self.updates = int(state["updates"])
