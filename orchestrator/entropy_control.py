"""Entropy as a set-point: a PI controller that moves a loss coefficient (or a cascade of two) to hold
policy entropy.

Why: Clip-Cov, KL-Cov, the forking mask and the entropy bonus each slow entropy collapse by an amount
that depends on model, task and batch size, so a fixed coefficient either does nothing or
over-corrects (Cui et al. report the entropy bonus brittle: 1e-4..1e-3 no effect, 0.01 explodes).
Closing the loop lets the run state the entropy it wants (a constant or a schedule over steps) and
lets the controller find the coefficient, within bounds the user sets.

What this does:
- ``EntropyControlConfig``: the ``algorithm.entropy_control`` section (target, gains, actuator, bounds).
- ``EntropyController``: a pure PI controller with anti-windup (or the peer's +-delta rule, mode
  adaptive). ``update(step, measured_entropy)``
  returns the actuator's value for the next training step; ``state_dict`` / ``load_state_dict``
  carry it through checkpoints; ``metrics()`` gives the ``entropy_control/*`` gauges.
- ``actuator_value`` / ``with_actuator`` read and set the actuator (a cascade: a tuple, one value per
  stage) on a (frozen) loss config,
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

Which actuator holds a set-point (issue 21; chosen from the plant, not yet from a run). Every step takes several optimizer updates (the
compare recipes: 4 mini-batches) and the FIRST one is on-policy: lp == lp_old exactly. KL-Cov's
penalty beta |lp - lp_old| has value 0 and gradient 0 there (torch's d|x|/dx at 0 is 0), so a beta
controller is silent on a quarter of the updates and can only slow a collapse the on-policy update
drives; the issue-11 run (target 1.0) ended at 0.68 nats with beta at 3.8 of its 5. Measured on one
on-policy micro-batch with the real ``compute_policy_loss`` (the plant of
tests/test_entropy_control_plant.py, ``response``): the gradient the actuator adds at its max is
exactly 0 for kl_cov_beta (0.094 on an off-policy batch), 8.8e-4 for entropy_coef in [0, 0.01] (the
same on- and off-policy: d/dtheta of c agg(H) does not involve the ratio at all) and 0.057 for
clip_cov_ratio in [0, 0.2] (the detached tokens lose their whole PG gradient, ratio 1 or not); the
three are gradients of different inputs (entropy vs log-probs), so only zero vs nonzero compares
across actuators. Of the two that act, the entropy bonus acts on every valid token, continuously and linearly in its coefficient; Clip-Cov's ratio acts
on floor(ratio N) tokens, in steps of one token, and only on tokens whose cov lies in (lb, ub), so
it is silent whenever no token falls in that band. Hence the recommended set-point
(recipes/compare/setpoint.yaml): the entropy bonus first, cascaded into Clip-Cov's ratio for the
authority beyond the bonus's bound (Cui et al. found a large bonus unstable, so its bound stays low).

Cascade (split range, a standard process-control arrangement): ``actuator`` and ``bounds`` may be
lists of n stages with the same direction. The controller's command x in [0, 1] drives stage i over
x in [i/n, (i+1)/n]: stage 0 moves first; only once it sits at its max does stage 1 leave its min.
One PI loop, so nothing hands over abruptly and there is one integral to wind up, not two.

Modes: ``pi`` (above) and ``adaptive``, the one closed-loop rule a peer ships: Skywork-OR1's adaptive
entropy control (He et al., arXiv 2505.22312 §3.2; the rule TRL's adaptive entropy coefficient
follows, as the issue cites it: its code was not in the search corpus, so this is the paper's rule).
The coefficient c moves by +delta after a step whose entropy was below target, by -delta after one
above, clipped to the bounds [min, max]; the loss applies c only while the entropy is at or below
target (alpha_k = c_k 1{H_k <= target}) and the bounds' min otherwise. No proportional or integral
term: the speed of correction is delta per step whatever the error.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Sequence, Union

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


Bounds = tuple[FiniteFloat, FiniteFloat]


class EntropyControlConfig(BaseModel):
    """``algorithm.entropy_control``: hold the policy entropy at a target by moving loss coefficients."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Adjust the actuator every step from the measured policy entropy.")
    target: Union[Entropy, list[SchedulePoint]] = Field(1.0, description=(
        "Target token-mean policy entropy in nats (the learner's policy/entropy): a constant, or a "
        "schedule [[step, value], ...] with increasing steps, linearly interpolated between points and "
        "held flat before the first and after the last."))
    actuator: Union[Actuator, list[Actuator]] = Field("kl_cov_beta", description=(
        "Loss coefficient the controller moves: kl_cov_beta (learner.loss.beta, type kl_cov; 0 on the "
        "on-policy first mini-batch, so silent there), clip_cov_ratio (learner.loss.ratio, type "
        "clip_cov), forking_rho (learner.loss.forking.rho, any type with forking set) or entropy_coef "
        "(learner.loss.entropy_coef, any type). A list is a split-range cascade, first stage first "
        "(mode pi only), e.g. [entropy_coef, clip_cov_ratio]."))
    bounds: Optional[Union[Bounds, list[Bounds]]] = Field(None, description=(
        "[min, max] of the actuator (a list of them for a cascade, one per stage), required when "
        "enabled: the controller never leaves them. Finite, and within the loss field's own limits "
        "(rho in (0, 1], ratio in [0, 1], beta and entropy_coef >= 0)."))
    mode: Literal["pi", "adaptive"] = Field("pi", description=(
        "pi: the PI controller with anti-windup (module doc). adaptive: Skywork-OR1's rule (the peer's): "
        "+-delta per step while entropy is below / above target, applied only while below."))
    kp: float = Field(0.5, ge=0, allow_inf_nan=False, description=(
        "Proportional gain (mode pi): fraction of the bounds' range moved per nat of error."))
    ki: float = Field(0.1, ge=0, allow_inf_nan=False, description=(
        "Integral gain (mode pi): fraction of the range moved per nat of error summed over steps (removes "
        "the steady-state offset a P controller leaves)."))
    delta: float = Field(0.005, gt=0, allow_inf_nan=False, description=(
        "Step of the coefficient per training step (mode adaptive), in the actuator's units; 0.005 is "
        "Skywork-OR1's."))

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

    def stages(self) -> list[str]:
        """The actuators, first stage first (one for a single actuator)."""
        return list(self.actuator) if isinstance(self.actuator, list) else [self.actuator]

    def stage_bounds(self) -> list[tuple[float, float]]:
        """[min, max] per stage (bounds must be set)."""
        if self.bounds is None:
            raise ValueError("entropy_control.bounds is not set")
        return [tuple(b) for b in self.bounds] if isinstance(self.bounds, list) else [tuple(self.bounds)]

    @model_validator(mode="after")
    def _bounds_valid(self) -> "EntropyControlConfig":
        names = self.stages()
        if not names:
            raise ValueError("actuator: a cascade needs at least one stage")
        if len(set(names)) != len(names):
            raise ValueError(f"actuator: a cascade names each stage once, got {names}")
        if self.mode == "adaptive" and names != ["entropy_coef"]:
            raise ValueError(f"actuator: mode 'adaptive' (Skywork-OR1's rule) moves the entropy bonus, "
                             f"entropy_coef alone; got {self.actuator!r}")
        if len({DIRECTION[n] for n in names}) > 1:
            raise ValueError(f"actuator: the stages of a cascade must move entropy the same way, got {names}")
        if self.bounds is None:
            if self.enabled:
                raise ValueError(f"bounds: enabled entropy control needs [min, max] of {self.actuator}")
            return self
        if isinstance(self.actuator, list) != isinstance(self.bounds, list):
            raise ValueError("bounds: a cascade's bounds are a list of [min, max], one per stage; a "
                             "single actuator's are one [min, max]")
        all_bounds = self.stage_bounds()
        if len(all_bounds) != len(names):
            raise ValueError(f"bounds: {len(all_bounds)} [min, max] pairs for {len(names)} stages {names}")
        for name, (lo, hi) in zip(names, all_bounds):
            if not lo < hi:
                raise ValueError(f"bounds: min {lo} must be < max {hi}")
            low, high, open_low = _HARD_LIMITS[name]
            if lo < low or (open_low and lo == low) or hi > high:
                left = "(" if open_low else "["
                raise ValueError(f"bounds [{lo}, {hi}] leave {name}'s range {left}{low}, {high}]")
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


def _names(actuator: Union[str, list[str]]) -> list[str]:
    return list(actuator) if isinstance(actuator, (list, tuple)) else [actuator]


def actuator_problem(loss: Any, actuator: Union[str, list[str]]) -> Optional[str]:
    """Why ``actuator`` (or a cascade stage) does not exist on this loss config, or None."""
    for name in _names(actuator):
        problem = _one_problem(loss, name)
        if problem:
            return problem if isinstance(actuator, str) else f"stage {name!r} {problem}"
    return None


def _one_problem(loss: Any, actuator: str) -> Optional[str]:
    if actuator == "kl_cov_beta" and loss.type != "kl_cov":
        return f"needs learner.loss.type='kl_cov' (got {loss.type!r})"
    if actuator == "clip_cov_ratio" and loss.type != "clip_cov":
        return f"needs learner.loss.type='clip_cov' (got {loss.type!r})"
    if actuator == "forking_rho" and loss.forking is None:
        return "needs learner.loss.forking set (the forking mask is off)"
    return None


def actuator_value(loss: Any, actuator: Union[str, list[str]]) -> Union[float, tuple[float, ...]]:
    """The actuator's current value on a loss config (the controller's starting point); a tuple, one
    per stage, for a cascade."""
    problem = actuator_problem(loss, actuator)
    if problem:
        raise ValueError(f"actuator {actuator!r} {problem}")
    vals = tuple(_one_value(loss, n) for n in _names(actuator))
    return vals[0] if isinstance(actuator, str) else vals


def _one_value(loss: Any, actuator: str) -> float:
    if actuator == "kl_cov_beta":
        return float(loss.beta)
    if actuator == "clip_cov_ratio":
        return float(loss.ratio)
    if actuator == "forking_rho":
        return float(loss.forking.rho)
    return float(loss.entropy_coef)


def with_actuator(loss: Any, actuator: Union[str, list[str]], value: Union[float, Sequence[float]]) -> Any:
    """A copy of the (frozen) loss config with the actuator set to ``value`` (a cascade: one value per
    stage); the input is unchanged.

    ``model_copy`` skips validation, so the controller's bounds (checked against the field's limits
    by EntropyControlConfig) are what keep the value legal.
    """
    problem = actuator_problem(loss, actuator)
    if problem:
        raise ValueError(f"actuator {actuator!r} {problem}")
    names = _names(actuator)
    values = [value] if isinstance(actuator, str) else list(value)
    if len(values) != len(names):
        raise ValueError(f"actuator {actuator!r}: {len(values)} values for {len(names)} stages")
    for name, v in zip(names, values):
        loss = _set_one(loss, name, float(v))
    return loss


def _set_one(loss: Any, actuator: str, value: float) -> Any:
    if actuator == "kl_cov_beta":
        return loss.model_copy(update={"beta": value})
    if actuator == "clip_cov_ratio":
        return loss.model_copy(update={"ratio": value})
    if actuator == "forking_rho":
        return loss.model_copy(update={"forking": loss.forking.model_copy(update={"rho": value})})
    return loss.model_copy(update={"entropy_coef": value})


# ---- the controller --------------------------------------------------------------------------------


class EntropyController:
    """PI controller with anti-windup (or, mode adaptive, Skywork-OR1's +-delta rule) from measured
    entropy to the actuator's value (see module doc).

    Pure: no clock, no I/O; its whole state is the error integral (adaptive: the coefficient), the
    last output and the update count, which ``state_dict`` returns for the trainer's checkpoint.
    ``value`` is a float for one actuator and a tuple (one per stage) for a cascade, what
    ``with_actuator`` takes for the same ``cfg.actuator``.
    """

    def __init__(self, cfg: EntropyControlConfig, initial: Union[float, Sequence[float]]):
        if cfg.bounds is None:
            raise ValueError("EntropyController needs cfg.bounds")
        self.cfg = cfg
        self.names = cfg.stages()
        self.bounds = cfg.stage_bounds()
        self.cascade = isinstance(cfg.actuator, list)
        self.lo, self.hi = self.bounds[0]
        self.sign = DIRECTION[self.names[0]]
        inits = list(initial) if self.cascade else [initial]
        if len(inits) != len(self.names):
            raise ValueError(f"EntropyController: {len(inits)} initial values for stages {self.names}")
        self.x0 = sum(_unit(v, lo, hi) for v, (lo, hi) in zip(inits, self.bounds)) / len(self.names)
        self.integral = 0.0
        self.coef = self.lo + (self.hi - self.lo) * self.x0  # mode adaptive: Skywork's c_k
        self.command = self.x0
        self.value = self._values(self.x0)
        self.updates = 0
        self._last = {"target": math.nan, "error": math.nan}

    def _values(self, x: float) -> Union[float, tuple[float, ...]]:
        """Stage values at command x: stage i moves over x in [i/n, (i+1)/n] (split range)."""
        n = len(self.names)
        vals = tuple(lo + (hi - lo) * min(max(n * x - i, 0.0), 1.0) for i, (lo, hi) in enumerate(self.bounds))
        return vals if self.cascade else vals[0]

    def update(self, step: int, measured_entropy: float) -> Union[float, tuple[float, ...]]:
        """The actuator value for the next step, from the entropy measured at ``step``.

        A non-finite measurement (a step without loss tokens measures nothing) holds the actuator and
        the integral as they are.
        """
        target = target_at(self.cfg.target, step)
        if not math.isfinite(measured_entropy):
            self._last = {"target": target, "error": math.nan}
            return self.value
        e = target - measured_entropy
        if self.cfg.mode == "adaptive":
            self._adaptive(e)
        else:
            self._pi(e)
        self.updates += 1
        self._last = {"target": target, "error": e}
        return self.value

    def _adaptive(self, e: float) -> None:
        """Skywork-OR1: c += delta below target, -= delta above, within the bounds; applied only while
        the entropy is at or below target (the bounds' min otherwise)."""
        if e > 0:
            self.coef = min(self.coef + self.cfg.delta, self.hi)
        elif e < 0:
            self.coef = max(self.coef - self.cfg.delta, self.lo)
        self.value = self.coef if e >= 0 else self.lo
        self.command = _unit(self.value, self.lo, self.hi)

    def _pi(self, e: float) -> None:
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
        self.command = min(max(self.x0 + s * (kp * e + ki * self.integral), 0.0), 1.0)
        self.value = self._values(self.command)

    def metrics(self) -> dict[str, float]:
        """Gauges of the last update: target, error (target - measured, nats) and the actuator value
        (a cascade: the command x in [0, 1] and each stage's value; adaptive: also Skywork's c)."""
        m = {"entropy_control/target": self._last["target"], "entropy_control/error": self._last["error"]}
        if self.cascade:
            m["entropy_control/command"] = self.command
            m.update({f"entropy_control/{n}": v for n, v in zip(self.names, self.value)})
        else:
            m["entropy_control/actuator"] = self.value
        if self.cfg.mode == "adaptive":
            m["entropy_control/coef"] = self.coef
        return m

    def state_dict(self) -> dict[str, Any]:
        state = {"integral": self.integral, "value": list(self.value) if self.cascade else self.value,
                 "updates": self.updates, "actuator": self.cfg.actuator}
        if self.cfg.mode == "adaptive":
            state["coef"] = self.coef
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if _names(state["actuator"]) != self.names:
            raise ValueError(f"entropy controller state is for actuator {state['actuator']!r}, this run "
                             f"controls {self.cfg.actuator!r}")
        self.integral = float(state["integral"])
        vals = [float(v) for v in _names(state["value"])] if self.cascade else [float(state["value"])]
        # bounds may have been narrowed since the checkpoint
        clamped = tuple(min(max(v, lo), hi) for v, (lo, hi) in zip(vals, self.bounds))
        self.value = clamped if self.cascade else clamped[0]
        self.command = sum(_unit(v, lo, hi) for v, (lo, hi) in zip(clamped, self.bounds)) / len(self.names)
        if self.cfg.mode == "adaptive":
            self.coef = min(max(float(state.get("coef", clamped[0])), self.lo), self.hi)
        self.updates = int(state["updates"])


def _unit(v: float, lo: float, hi: float) -> float:
    """v as a fraction of [lo, hi], clamped to [0, 1]."""
    return min(max((v - lo) / (hi - lo), 0.0), 1.0)
