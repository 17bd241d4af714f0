"""The shipped Grafana dashboard is the generated one, and every metric it plots is one that forkrl
logs: the loss metrics come from running every registered loss, the rest from the code that logs them."""
import json
from pathlib import Path

import torch

from orchestrator import grafana
from orchestrator.metrics import gauge_name

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "cluster_configs" / "grafana" / "forkrl_dashboard.json"


def test_shipped_dashboard_is_current():
    assert SHIPPED.read_text() == grafana.render(), "regenerate: python -m orchestrator.grafana > " + str(SHIPPED)


def test_every_panel_queries_a_gauge_forkrl_exports():
    exprs = [t["expr"] for p in json.loads(SHIPPED.read_text())["panels"] for t in p["targets"]]
    assert {e.split("{")[0] for e in exprs} == {"ray_" + gauge_name(k) for k in grafana.panel_keys()}


def _loss_metric_keys() -> set[str]:
    """Metric names the learner reports from the policy loss, over every loss type of the config union,
    with the forking mask and reference KL where the type has them (the learner prefixes train/)."""
    from typing import get_args

    from pydantic import TypeAdapter

    from learner.loss_config import PolicyLossConfig
    from learner.losses import LossInputs, compute_policy_loss

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
    sources = "\n".join((ROOT / p).read_text() for p in (
        "orchestrator/trainer.py", "orchestrator/weights.py", "learner/worker.py", "rewards/pool.py"))
    for key in grafana.panel_keys():
        section, name = key.split("/", 1)
        if section == "train" and name in loss_keys:
            continue
        # The trainer logs its own keys whole ("reward/mean"); the learner's, pool's and pusher's are
        # prefixed by the trainer (train/, verify/, sync/): their names appear as string literals.
        assert f'"{key}"' in sources or f'"{name}"' in sources, key
