"""The shipped Grafana dashboard is the generated one, and every metric it plots is one that forkrl
logs: the loss metrics come from running every registered loss, the rest from the code that logs them."""
import json
from pathlib import Path

import torch

from forkrl.orchestrator import grafana
from forkrl.orchestrator.metrics import gauge_name

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "cluster_configs" / "grafana" / "forkrl_dashboard.json"


def test_shipped_dashboard_is_current():
    assert SHIPPED.read_text() == grafana.render(), "regenerate: python -m forkrl.orchestrator.grafana > " + str(SHIPPED)


def test_actor_learner_dynamics_have_panels():
    """Buffer depth, staleness, each role's tokens/s and the fraction of wall time each role is busy."""
    want = {"buffer/depth", "staleness/mean", "rollout/tokens_per_s", "train/tokens_per_s",
            "role/rollout_busy_frac", "role/learner_busy_frac", "role/verifier_busy_frac"}
    assert want <= set(grafana.panel_keys())
    busy = next(p for p in grafana.dashboard()["panels"] if "role/learner_busy_frac" in json.dumps(p["targets"]))
    assert busy["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert 'ray_forkrl_role_learner_busy_frac{run=~"$run"}' in [t["expr"] for t in busy["targets"]]


def test_the_run_is_the_run_label_not_prometheus_job():
    """The gauges' tag is `run`: a `job` tag collides with Prometheus's own label (exported_job)."""
    shipped = SHIPPED.read_text()
    assert "exported_job" not in shipped and '{job' not in shipped
    run_var = next(v for v in grafana.dashboard()["templating"]["list"] if v["name"] == "run")
    assert run_var["query"]["query"] == "label_values(ray_forkrl_step_weight_version, run)"


def test_every_panel_queries_a_gauge_forkrl_exports():
    exprs = [t["expr"] for p in json.loads(SHIPPED.read_text())["panels"] for t in p["targets"]]
    assert {e.split("{")[0] for e in exprs} == {"ray_" + gauge_name(k) for k in grafana.panel_keys()}


def _loss_metric_keys() -> set[str]:
    """Metric names the learner reports from the policy loss, over every loss type of the config union,
    with the forking mask and reference KL where the type has them (the learner prefixes train/)."""
    from typing import get_args

    from pydantic import TypeAdapter

    from forkrl.learner.loss_config import PolicyLossConfig
    from forkrl.learner.losses import LossInputs, compute_policy_loss

    torch.manual_seed(0)
    b, t = 4, 16
    inputs = LossInputs(logprobs=torch.randn(b, t) * 0.1 - 2, old_logprobs=torch.randn(b, t) * 0.1 - 2,
                        advantages=torch.randn(b, 1).expand(b, t).clone(), mask=torch.ones(b, t),
                        entropy=torch.rand(b, t) * 3, ref_logprobs=torch.randn(b, t) * 0.1 - 2)
    adapter = TypeAdapter(PolicyLossConfig)
    keys: set[str] = set()
    for cls in get_args(get_args(PolicyLossConfig)[0]):
        spec = {"type": cls.model_fields["type"].default}
        if "forking" in cls.model_fields:
            spec["forking"] = {"rho": 0.2}
        if "ref_kl" in cls.model_fields:
            spec["ref_kl"] = {"coef": 0.1}
        _, metrics = compute_policy_loss(inputs, adapter.validate_python(spec))
        keys |= set(metrics)
    return keys


def test_plotted_metrics_are_logged_somewhere():
    loss_keys = _loss_metric_keys()
    # Every module of the roles and the driver, except the dashboard's own list of keys.
    sources = "\n".join(p.read_text() for pkg in ("orchestrator", "learner", "actors", "rewards")
                         for p in sorted((ROOT / pkg).glob("*.py")) if p.name != "grafana.py")
    for key in grafana.panel_keys():
        section, name = key.split("/", 1)
        if section == "train" and name in loss_keys:
            continue
        # The trainer logs its own keys whole ("reward/mean"); the learner's, pool's and pusher's are
        # prefixed by the trainer (train/, verify/, sync/): their names appear as string literals.
        assert f'"{key}"' in sources or f'"{name}"' in sources, key
