"""Entropy as a set-point (orchestrator.entropy_control): the PI controller on synthetic entropy
sequences from a first-order plant, its anti-windup, schedules, checkpoints, and the actuator on each
loss config. Expected values are worked out by hand in the docstrings."""
import math

import pytest
from pydantic import ValidationError

from forkrl.learner.loss_config import ClipCovLoss, ForkingConfig, KLCovLoss, PPOClipLoss
from forkrl.orchestrator.config import ConfigError, load_config
from forkrl.orchestrator.entropy_control import (EntropyControlConfig, EntropyController, actuator_problem, actuator_value,
                                          target_at, with_actuator)


def ctl(actuator="entropy_coef", bounds=(0.0, 0.01), initial=0.0, **kw):
    cfg = EntropyControlConfig(enabled=True, actuator=actuator, bounds=bounds, **kw)
    return EntropyController(cfg, initial=initial)


def plant_run(c: EntropyController, steps: int, h0: float = 2.0, rate: float = 0.5):
    """First-order plant: entropy relaxes at `rate` per step toward H_eq = 0.2 + 2 x, x the actuator as a
    fraction of its bounds (x = 0: collapse toward 0.2 nats; x = 1: 2.2 nats). Returns (H, u) per step."""
    h, out = h0, []
    for step in range(steps):
        u = c.update(step, h)
        out.append((h, u))
        x = (u - c.lo) / (c.hi - c.lo)
        h = h + rate * (0.2 + 2.0 * x - h)
    return out


def test_first_steps_written_out():
    """kp 0.5, ki 0.1, target 1, x0 0, bounds [0, 0.01].
    step 0: H 2.0, e -1: pushed 0.5(-1) + 0.1(-1) < 0 with e pushing down: no integrating; x = 0.
    step 1: H = 2 + 0.5(0.2 - 2) = 1.1, e -0.1: x = 0.
    step 2: H = 1.1 + 0.5(0.2 - 1.1) = 0.65, e 0.35: I 0.35, x = 0.175 + 0.035 = 0.21, u 0.0021.
    step 3: H = 0.65 + 0.5(0.2 + 0.42 - 0.65) = 0.635, e 0.365: I 0.715, x = 0.1825 + 0.0715 = 0.254."""
    run = plant_run(ctl(target=1.0), 4)
    assert [h for h, _ in run] == pytest.approx([2.0, 1.1, 0.65, 0.635])
    assert [u for _, u in run] == pytest.approx([0.0, 0.0, 0.0021, 0.00254])


def test_settles_to_the_target_with_no_offset():
    """The plant holds H = 1 at x = 0.4 (0.2 + 2 x = 1): u = 0.004. The integral removes the offset a P
    controller would leave."""
    c = ctl(target=1.0)
    run = plant_run(c, 200)
    assert all(abs(h - 1.0) < 1e-3 for h, _ in run[-50:])
    assert run[-1][1] == pytest.approx(0.004, abs=1e-5)
    m = c.metrics()
    assert set(m) == {"entropy_control/target", "entropy_control/error", "entropy_control/actuator"}
    assert m["entropy_control/target"] == 1.0 and abs(m["entropy_control/error"]) < 1e-3
    assert m["entropy_control/actuator"] == run[-1][1]


def test_never_leaves_its_bounds():
    """Any entropy sequence (wild jumps, both signs of error, large gains): outputs stay in [lo, hi]."""
    c = ctl(actuator="kl_cov_beta", bounds=(0.5, 4.0), initial=1.0, target=1.0, kp=5.0, ki=2.0)
    seq = [0.0, 5.0, 0.01, 3.3, 1.0, 0.2, 9.0, 0.0, 0.0, 0.0, 4.0, 1.0] * 10
    outs = [c.update(i, h) for i, h in enumerate(seq)]
    assert all(0.5 <= u <= 4.0 for u in outs)
    assert min(outs) == 0.5 and max(outs) == 4.0  # and it does reach both


def test_no_windup_after_saturation():
    """Target 3 nats is out of the plant's reach (H_eq <= 2.2): the actuator sits at its max for 100
    steps. Then the target drops to 0.5 and the actuator leaves the max at the very first step, because
    the integral stopped growing at saturation (a plain integrator would hold ~0.8 x 100 = 80 nat-steps,
    ki I = 8 ranges, and stays pinned at the max for 37 more steps in this plant)."""
    c = ctl(target=[(0, 3.0), (99, 3.0), (100, 0.5)])
    run = plant_run(c, 160)
    assert all(u == pytest.approx(0.01, abs=1e-12) for _, u in run[4:100])
    assert run[100][1] < 0.005  # e = 0.5 - 2.2: the P term alone, -0.85 of the range, outweighs ki I
    assert c.integral * c.cfg.ki <= 1.0  # the integral term alone never exceeds the range
    assert all(abs(h - 0.5) < 0.01 for h, _ in run[-20:])  # and it settles at the new target


def test_follows_a_schedule():
    """Target ramps 1.5 -> 0.5 over steps 0..100, then holds: the plant tracks the ramp within 0.05 nats
    once the start-up transient is over, and the flat end within 1e-3."""
    c = ctl(target=[(0, 1.5), (100, 0.5)], kp=1.0, ki=0.3)
    run = plant_run(c, 200, h0=1.5)
    assert all(abs(h - target_at(c.cfg.target, s)) < 0.05 for s, (h, _) in enumerate(run) if 20 <= s <= 100)
    assert all(abs(h - 0.5) < 1e-3 for h, _ in run[-30:])


@pytest.mark.parametrize("step, want", [(0, 1.5), (25, 1.25), (50, 1.0), (100, 0.5), (150, 0.5)])
def test_target_schedule_interpolates_and_holds(step, want):
    assert target_at([(0, 1.5), (100, 0.5)], step) == pytest.approx(want)


def test_target_is_exact_at_every_schedule_point():
    """The point's own value, not v0 + (v1 - v0) (s1 - s0) / (s1 - s0): 0.1 + 0.4 * 3 / 3 is
    0.5000000000000001 and 1.5 + (0.1 - 1.5) * 1 / 1 is 0.10000000000000009."""
    sched = [(0, 0.1), (3, 0.5), (10, 0.2)]
    assert [target_at(sched, s) for s in (0, 3, 10)] == [0.1, 0.5, 0.2]
    assert target_at([(0, 1.5), (1, 0.1)], 1) == 0.1
    assert [target_at([(5, 0.3)], s) for s in (0, 5, 9)] == [0.3, 0.3, 0.3]  # one point: flat


def test_target_before_the_first_point_and_constant():
    assert target_at([(10, 2.0), (20, 1.0)], 5) == 2.0
    assert target_at([(10, 2.0), (20, 1.0)], 15) == 1.5
    assert target_at(0.7, 123) == 0.7


def test_bumpless_start_and_forking_rho_moves_the_other_way():
    """Zero error returns the loss config's own value. Forking rho lowers entropy when raised (s = -1):
    bounds [0.1, 1], rho 0.2 -> x0 = 1/9; entropy 0.1 below target: x = 1/9 - (0.5 * 0.1 + 0.1 * 0.1)
    = 0.05111, rho = 0.1 + 0.9 * 0.05111 = 0.146."""
    c = ctl(actuator="forking_rho", bounds=(0.1, 1.0), initial=0.2, target=1.0)
    assert c.update(0, 1.0) == pytest.approx(0.2)
    assert c.update(1, 0.9) == pytest.approx(0.146)


def test_initial_value_outside_the_bounds_is_clamped():
    assert ctl(bounds=(0.001, 0.01), initial=0.0, target=1.0).update(0, 1.0) == pytest.approx(0.001)


@pytest.mark.parametrize("initial, want", [(0.375, 0.375), (2.0, 0.75), (0.0, 0.25)])
def test_value_before_the_first_update_is_the_clamped_initial(initial, want):
    """Bounds [0.25, 0.75]: x0 = (0.375 - 0.25) / 0.5 = 0.25 and 0.25 + 0.5 * 0.25 = 0.375 (exact in
    binary); 2.0 and 0.0 clamp to the bounds. A first step that measures nothing holds this value."""
    c = ctl(actuator="kl_cov_beta", bounds=(0.25, 0.75), initial=initial, target=1.0)
    assert c.value == want and c.metrics()["entropy_control/actuator"] == want
    assert c.state_dict() == {"integral": 0.0, "value": want, "updates": 0, "actuator": "kl_cov_beta"}
    assert c.update(0, float("nan")) == want


def test_zero_integral_gain_is_a_p_controller():
    """ki = 0: nothing is integrated (and nothing divides by ki). Bounds [0, 1], x0 0.5, kp 0.5, target 1:
    H 0.5 -> e 0.5, x = 0.5 + 0.25 = 0.75; H 1.5 -> e -0.5, x = 0.25; H 5 -> e -4, x = 0.5 - 2 -> 0;
    H 1 -> e 0, x = 0.5 (no offset is remembered)."""
    c = ctl(bounds=(0.0, 1.0), initial=0.5, target=1.0, kp=0.5, ki=0.0)
    assert [c.update(i, h) for i, h in enumerate([0.5, 1.5, 5.0, 1.0])] == [0.75, 0.25, 0.0, 0.5]
    assert c.integral == 0.0 and c.updates == 4


def test_resumed_integral_is_brought_back_inside_the_range():
    """A checkpoint's integral term can exceed the range of a run that resumes with another starting
    value: saved with ki I = 0.1 * 10 = 1 (a run from x0 = 0 held at its max), resumed with x0 = 0.5.
    Bounds [0, 1], kp 0.5, ki 0.1, target 1.
    step 0: H 0.8, e 0.2: before = 0.5 + 0.1 + 1 = 1.6 is past the max, nothing integrated; I is cut
      to (1 - x0) / ki = 5 and x = 0.5 + 0.1 + 0.5 -> 1.
    step 1: H 1.4, e -0.4: before = 0.5 - 0.2 + 0.5 = 0.8, all of e integrated: I 4.6,
      x = 0.5 - 0.2 + 0.46 = 0.76: it leaves the max at once (with I left at 10 it would stay there)."""
    c = ctl(bounds=(0.0, 1.0), initial=0.5, target=1.0)
    c.load_state_dict({"integral": 10.0, "value": 1.0, "updates": 50, "actuator": "entropy_coef"})
    assert c.update(50, 0.8) == 1.0 and c.integral == 5.0
    assert c.update(51, 1.4) == pytest.approx(0.76, abs=1e-12)
    assert c.integral == pytest.approx(4.6, abs=1e-12)


def test_nan_entropy_holds_the_actuator():
    c = ctl(target=1.0)
    u = c.update(0, 0.5)
    state = c.state_dict()
    assert c.update(1, float("nan")) == u
    assert c.state_dict() == state
    assert math.isnan(c.metrics()["entropy_control/error"]) and c.metrics()["entropy_control/target"] == 1.0


def test_checkpoint_resume_continues_exactly():
    seq = [2.0, 1.4, 0.9, 0.7, 0.8, 0.95, 1.1, 1.0, 0.6, 0.5]
    whole = ctl(target=1.0)
    want = [whole.update(i, h) for i, h in enumerate(seq)]
    first = ctl(target=1.0)
    for i, h in enumerate(seq[:5]):
        first.update(i, h)
    resumed = ctl(target=1.0)
    resumed.load_state_dict(first.state_dict())
    assert [resumed.update(i, h) for i, h in enumerate(seq[5:], start=5)] == want[5:]
    assert resumed.updates == 10


def test_checkpoint_of_another_actuator_is_refused():
    with pytest.raises(ValueError, match="kl_cov_beta"):
        ctl().load_state_dict(ctl(actuator="kl_cov_beta", bounds=(0.0, 2.0)).state_dict())


# ---- the actuator on the loss config ---------------------------------------------------------------


def test_with_actuator_sets_each_field_and_leaves_the_input_alone():
    kl = KLCovLoss(beta=1.0)
    assert with_actuator(kl, "kl_cov_beta", 2.5).beta == 2.5 and kl.beta == 1.0
    cc = ClipCovLoss(ratio=2e-4)
    assert with_actuator(cc, "clip_cov_ratio", 0.01).ratio == 0.01 and cc.ratio == 2e-4
    fk = PPOClipLoss(forking=ForkingConfig(rho=0.2, normalise="all"))
    out = with_actuator(fk, "forking_rho", 0.5)
    assert out.forking.rho == 0.5 and out.forking.normalise == "all" and fk.forking.rho == 0.2
    assert with_actuator(PPOClipLoss(), "entropy_coef", 1e-3).entropy_coef == 1e-3
    assert [actuator_value(kl, "kl_cov_beta"), actuator_value(cc, "clip_cov_ratio"),
            actuator_value(fk, "forking_rho"), actuator_value(fk, "entropy_coef")] == [1.0, 2e-4, 0.2, 0.0]


@pytest.mark.parametrize("loss, actuator, problem", [
    (PPOClipLoss(), "kl_cov_beta", "needs learner.loss.type='kl_cov' (got 'ppo_clip')"),
    (KLCovLoss(), "clip_cov_ratio", "needs learner.loss.type='clip_cov' (got 'kl_cov')"),
    (KLCovLoss(), "forking_rho", "needs learner.loss.forking set (the forking mask is off)"),
    (ClipCovLoss(), "entropy_coef", None),
    (KLCovLoss(forking=ForkingConfig()), "forking_rho", None),
])
def test_actuator_exists_only_on_its_loss(loss, actuator, problem):
    assert actuator_problem(loss, actuator) == problem
    if problem:
        with pytest.raises(ValueError, match="needs learner.loss"):
            with_actuator(loss, actuator, 0.5)


# ---- config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, match", [
    (dict(enabled=True), "bounds: enabled entropy control needs"),
    (dict(bounds=(1.0, 1.0)), "min 1.0 must be < max 1.0"),
    (dict(actuator="forking_rho", bounds=(0.0, 0.5)), r"leave forking_rho's range \(0.0, 1.0\]"),
    (dict(actuator="forking_rho", bounds=(0.1, 1.5)), "leave forking_rho's range"),
    (dict(actuator="clip_cov_ratio", bounds=(0.0, 1.01)), "leave clip_cov_ratio's range"),
    (dict(actuator="kl_cov_beta", bounds=(-0.1, 1.0)), "leave kl_cov_beta's range"),
    (dict(target=[(0, 1.0), (0, 0.5)]), "steps must increase strictly"),
    (dict(target=[]), "at least one"),
    (dict(target=-0.1), "greater than or equal to 0"),
    (dict(target=math.inf), "finite number"),
    (dict(target=[(0, 1.0), (5, math.inf)]), "finite number"),
    (dict(kp=math.inf), "finite number"),
    (dict(ki=math.nan), "finite number"),
    (dict(actuator="kl_cov_beta", bounds=(0.0, math.inf)), "finite number"),
    (dict(kp=-1.0), "greater than or equal to 0"),
    (dict(ki=-1.0), "greater than or equal to 0"),
    (dict(actuator="temperature"), "actuator"),
    (dict(gain=1.0), "Extra inputs"),
])
def test_config_rejects(kw, match):
    with pytest.raises(ValidationError, match=match):
        EntropyControlConfig(**kw)


def test_config_accepts_the_boundaries():
    EntropyControlConfig(actuator="forking_rho", bounds=(1e-6, 1.0))
    EntropyControlConfig(actuator="clip_cov_ratio", bounds=(0.0, 1.0), kp=0.0, ki=0.0, target=0.0)
    assert EntropyControlConfig(target=[[0, 1.0], [10, 0.5]]).target == [(0, 1.0), (10, 0.5)]


def test_job_config_wires_the_section_and_its_rule():
    cfg = load_config(None, ["learner.loss={type: kl_cov}",
                             "algorithm.entropy_control={enabled: true, target: [[0, 1.2], [60, 0.6]], "
                             "actuator: kl_cov_beta, bounds: [0.0, 4.0]}"])
    assert cfg.algorithm.entropy_control.bounds == (0.0, 4.0)
    load_config(None, ["algorithm.entropy_control={enabled: true, actuator: entropy_coef, bounds: [0, 0.01]}"])
    with pytest.raises(ConfigError, match="actuator='forking_rho' needs learner.loss.forking set"):
        load_config(None, ["algorithm.entropy_control={enabled: true, actuator: forking_rho, bounds: [0.1, 1]}"])
    assert load_config(None).algorithm.entropy_control.enabled is False


def test_a_disabled_section_without_bounds_is_kept():
    """Validated inside the job config (not through __init__), the section is what its validator
    returns: a disabled section without bounds must come back whole."""
    ec = load_config(None, ["algorithm.entropy_control={target: 0.8, kp: 0.3}"]).algorithm.entropy_control
    assert (ec.enabled, ec.target, ec.kp, ec.bounds) == (False, 0.8, 0.3, None)
    assert EntropyControlConfig.model_validate({"target": [[0, 1.0]]}).target == [(0, 1.0)]


# ---- issue 21: the peer's rule and the cascade --------------------------------------------------


def test_skywork_adaptive_rule_written_out():
    """delta 0.002, bounds [0, 0.005], target 1.0, start c = 0.
    H 0.8 (below): c = 0.002, applied 0.002. H 0.9: c = 0.004. H 0.95: c = 0.005 (clipped at max).
    H 1.2 (above): c = 0.003, applied 0 (the bonus is off above target). H 1.0 (at target): c stays
    0.003, applied 0.003."""
    c = ctl(bounds=(0.0, 0.005), target=1.0, mode="adaptive", delta=0.002)
    outs = [c.update(i, h) for i, h in enumerate([0.8, 0.9, 0.95, 1.2, 1.0])]
    assert outs == pytest.approx([0.002, 0.004, 0.005, 0.0, 0.003])
    assert c.metrics()["entropy_control/coef"] == pytest.approx(0.003)
    state = c.state_dict()
    again = ctl(bounds=(0.0, 0.005), target=1.0, mode="adaptive", delta=0.002)
    again.load_state_dict(state)
    assert again.update(5, 0.5) == pytest.approx(0.005)  # 0.003 + 0.002, resumed from the checkpoint


def test_cascade_split_range_written_out():
    """Stages entropy_coef [0, 0.01] then clip_cov_ratio [0, 0.2], kp 1, ki 0, start at 0: x = e.
    e 0.25 -> x 0.25: stage 0 at 2 x = 0.5 of its range (0.005), stage 1 at its min.
    e 0.75 -> x 0.75: stage 0 at max, stage 1 at 2 x - 1 = 0.5 of its range (0.1)."""
    c = ctl(actuator=["entropy_coef", "clip_cov_ratio"], bounds=[(0.0, 0.01), (0.0, 0.2)],
            initial=(0.0, 0.0), target=1.0, kp=1.0, ki=0.0)
    assert c.update(0, 0.75) == pytest.approx((0.005, 0.0))
    assert c.update(1, 0.25) == pytest.approx((0.01, 0.1))
    m = c.metrics()
    assert m["entropy_control/command"] == pytest.approx(0.75)
    assert (m["entropy_control/entropy_coef"], m["entropy_control/clip_cov_ratio"]) == pytest.approx((0.01, 0.1))
    loss = with_actuator(ClipCovLoss(), ["entropy_coef", "clip_cov_ratio"], c.value)
    assert (loss.entropy_coef, loss.ratio) == pytest.approx((0.01, 0.1))
    assert actuator_value(loss, ["entropy_coef", "clip_cov_ratio"]) == pytest.approx((0.01, 0.1))
    assert c.state_dict()["value"] == pytest.approx([0.01, 0.1])


@pytest.mark.parametrize("kw, msg", [
    (dict(actuator=["entropy_coef", "forking_rho"], bounds=[(0, 1), (0.1, 1)]), "same way"),
    (dict(actuator=["entropy_coef", "entropy_coef"], bounds=[(0, 1), (0, 1)]), "each stage once"),
    (dict(actuator=["entropy_coef", "clip_cov_ratio"], bounds=(0.0, 1.0)), "one per stage"),
    (dict(actuator=["entropy_coef", "clip_cov_ratio"], bounds=[(0.0, 1.0)]), "1 \\[min, max\\] pairs for 2"),
    (dict(actuator=["entropy_coef", "clip_cov_ratio"], bounds=[(0.0, 1.0), (0.0, 1.5)]), "clip_cov_ratio's range"),
    (dict(actuator="kl_cov_beta", bounds=(0.0, 1.0), mode="adaptive"), "entropy_coef alone"),
])
def test_cascade_and_adaptive_config_errors(kw, msg):
    with pytest.raises(ValidationError, match=msg):
        EntropyControlConfig(**kw)


def test_cascade_stage_missing_on_the_loss_is_named():
    assert actuator_problem(PPOClipLoss(), ["entropy_coef", "clip_cov_ratio"]) == (
        "stage 'clip_cov_ratio' needs learner.loss.type='clip_cov' (got 'ppo_clip')")
