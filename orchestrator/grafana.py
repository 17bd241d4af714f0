"""The Grafana dashboard for forkrl's gauges, generated from one list of panels.

`python -m forkrl.orchestrator.grafana > cluster_configs/grafana/forkrl_dashboard.json` writes the shipped
file (a test checks it is current). Each panel names metric keys as the trainer logs them
(`reward/mean`, `train/clipfrac_high`, ...); the query uses the Prometheus name Ray exports,
`ray_` + orchestrator.metrics.gauge_name(key). Panels use the `${datasource}` variable like Ray's own
generated dashboards, so the file loads beside them.

The gauges' `run` tag (the run name) is the dashboard's `$run` variable. It is not called `job`:
every scraped series already has Prometheus's own `job` label, and Ray's Prometheus config does not
honour scraped labels, so a `job` tag arrived renamed to `exported_job`.
"""
from __future__ import annotations

import json
import sys

from forkrl.orchestrator.metrics import gauge_name

RUN_LABEL = "run"

# (title, unit, metric keys). Keys that only some losses produce (covariance controls, forking,
# SENT, reference KL) stay empty for runs without them.
PANELS: list[tuple[str, str, list[str]]] = [
    ("Reward and accuracy", "none", ["reward/mean", "reward/std", "reward/accuracy", "eval/accuracy"]),
    ("Policy entropy", "none", ["policy/entropy"]),
    ("Entropy change per step", "none", ["policy/entropy_change"]),
    ("Covariance (mean, top-0.1% tail, max)", "none",
     ["train/cov_mean", "train/cov_top0.1pct_mean", "train/cov_max"]),
    ("Fraction of tokens touched by each control", "percentunit",
     ["train/frac_clip_cov_zeroed", "train/frac_kl_cov_penalised", "train/frac_forking_kept",
      "train/frac_sent_low_entropy", "train/frac_sent_high", "train/frac_sent_low"]),
    ("Clip fractions", "percentunit", ["train/clipfrac_high", "train/clipfrac_low", "train/clipfrac_dual"]),
    ("KL", "none", ["train/kl", "train/kl_old_k3", "train/kl_ref_k3"]),
    ("Staleness and weight version", "none", ["rollout/staleness", "step/weight_version"]),
    ("Async buffer depth and sample staleness (versions behind the learner)", "none",
     ["buffer/depth", "staleness/min", "staleness/mean", "staleness/max", "staleness/dropped_groups"]),
    ("Tokens per second of each role", "none", ["rollout/tokens_per_s", "train/tokens_per_s"]),
    ("Role utilisation (fraction of wall time busy)", "percentunit",
     ["role/rollout_busy_frac", "role/learner_busy_frac", "role/verifier_busy_frac"]),
    ("Phase times", "s", ["time/generate", "time/verify", "time/advantages", "time/train",
                          "time/push_weights", "time/step"]),
    ("Verifier verdicts (share of the step's samples)", "percentunit",
     ["verdict/ok", "verdict/wrong_answer", "verdict/unsimplified", "verdict/no_answer", "verdict/hedge",
      "verdict/bad_box"]),
    ("Verifier failures", "none", ["verify/timeouts", "verify/worker_deaths", "verify/user_errors",
                                   "verify/restarts"]),
    ("Entropy-law fit: predicted ceiling vs held-out accuracy", "none",
     ["entropy_law/ceiling", "eval/accuracy"]),
    ("Weight push", "s", ["sync/seconds", "time/push_weights"]),
    ("Response length", "none", ["response/length_mean", "response/truncated_frac"]),
    ("Gradient norm", "none", ["train/grad_norm"]),
    ("Learner restarts", "none", ["fault/learner_restarts"]),
]


def panel_keys() -> list[str]:
    return sorted({k for _, _, keys in PANELS for k in keys})


def _panel(i: int, title: str, unit: str, keys: list[str]) -> dict:
    targets = [{"refId": chr(ord("A") + j), "legendFormat": f"{key} {{{{{RUN_LABEL}}}}}",
                "expr": f'ray_{gauge_name(key)}{{{RUN_LABEL}=~"$run"}}'} for j, key in enumerate(keys)]
    return {"id": i + 1, "title": title, "type": "timeseries", "datasource": "${datasource}",
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}}, "targets": targets}


def dashboard() -> dict:
    run_var = {"name": "run", "label": "Run", "type": "query", "datasource": "${datasource}",
               "definition": f"label_values(ray_{gauge_name('step/weight_version')}, {RUN_LABEL})",
               "query": {"query": f"label_values(ray_{gauge_name('step/weight_version')}, {RUN_LABEL})",
                         "refId": "StandardVariableQuery"},
               "refresh": 2, "includeAll": True, "allValue": ".*", "multi": False,
               "current": {"text": ["All"], "value": ["$__all"]}}
    datasource_var = {"name": "datasource", "type": "datasource", "query": "prometheus", "hide": 0,
                      "refresh": 1, "includeAll": False, "multi": False, "current": {}}
    return {"title": "forkrl", "uid": "forkrl", "version": 1, "schemaVersion": 27, "editable": True,
            "refresh": "30s", "time": {"from": "now-6h", "to": "now"}, "graphTooltip": 1,
            "templating": {"list": [datasource_var, run_var]},
            "panels": [_panel(i, *p) for i, p in enumerate(PANELS)]}


def render() -> str:
    return json.dumps(dashboard(), indent=1) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
