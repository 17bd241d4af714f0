"""Per-step metrics: one dict per step, sent to every configured place at once.

- the Ray dashboard / Prometheus, as `ray.util.metrics` gauges named `forkrl_<metric>` (Ray exports
  them as `ray_forkrl_<metric>` on the node's metrics port; cluster_configs/grafana/ has a dashboard),
  tagged `run` with the run's name (not `job`: every scraped series has Prometheus's own `job` label,
  which renamed a `job` tag to `exported_job`);
- `metrics.jsonl` in the run dir (one JSON object per line, appended, so a resumed run continues it);
- optionally TensorBoard event files (`<run dir>/tensorboard/`) and Weights & Biases (offline by
  default). Both are optional packages, imported only when turned on;
- PNG curves (reward, accuracy, entropy, held-out accuracy) written by `plot_run`.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

PLOTTED = (("reward/mean", "train reward"), ("eval/accuracy", "held-out pass@1"),
           ("policy/entropy", "policy entropy"), ("response/length_mean", "response length"))


def gauge_name(key: str) -> str:
    """The ray.util.metrics gauge of a metric key (Ray exports it with a `ray_` prefix)."""
    return "forkrl_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


class MetricsSink:
    def __init__(self, run_dir: Path, ray_metrics: bool = True, run: str = "forkrl", tensorboard: bool = False,
                 wandb_project: str | None = None, wandb_mode: str = "offline", config: dict | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ray_metrics = ray_metrics
        self.run = run
        self._gauges: dict[str, Any] = {}
        self._tb = _tensorboard_writer(Path(run_dir) / "tensorboard") if tensorboard else None
        self._wandb = _wandb_run(wandb_project, wandb_mode, run, Path(run_dir), config) if wandb_project else None

    def _gauge(self, key: str):
        if key not in self._gauges:
            from ray.util.metrics import Gauge

            self._gauges[key] = Gauge(gauge_name(key), description=f"forkrl {key}", tag_keys=("run",))
        return self._gauges[key]

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.ray_metrics:
            for k, v in clean.items():
                self._gauge(k).set(v, tags={"run": self.run})
        if self._tb is not None:
            for k, v in clean.items():
                self._tb.add_scalar(k, v, global_step=step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("logging.tensorboard needs the tensorboard package: pip install 'forkrl[tensorboard]'") \
            from None
    return SummaryWriter(log_dir=str(log_dir))


def _wandb_run(project: str, mode: str, name: str, run_dir: Path, config: dict | None):
    try:
        import wandb
    except ImportError:
        raise ImportError("logging.wandb_project needs the wandb package: pip install 'forkrl[wandb]'") from None
    # A resumed run logs into the same W&B run (same id); steps redone after a learner restart go
    # backwards and W&B drops them (metrics.jsonl keeps them).
    run_id = f"{name}-{hashlib.sha1(str(run_dir).encode()).hexdigest()[:8]}"
    return wandb.init(project=project, name=name, id=run_id, resume="allow", dir=str(run_dir), mode=mode,
                      config=config)


def read_metrics(path: Path) -> list[dict]:
    """Rows of a metrics.jsonl; a later row for the same step (after a resume) replaces the earlier."""
    by_step: dict[tuple[int, bool], dict] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            key = (row["step"], any(k.startswith("eval/") for k in row))
            by_step[key] = row
    return [by_step[k] for k in sorted(by_step)]


def plot_run(metrics_path: Path, out_png: Path, title: str = "") -> Path | None:
    """Reward, held-out accuracy, entropy and length against step, one panel each, and the fraction of
    wall time each role is busy (one panel, a line per role) when the run logged `role/*_busy_frac`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    panels = [(k, label) for k, label in PLOTTED if any(k in r for r in rows)]
    roles = [(f"role/{role}_busy_frac", role) for role in ("rollout", "learner", "verifier")
             if any(f"role/{role}_busy_frac" in r for r in rows)]
    n = len(panels) + (1 if roles else 0)
    if not n:
        return None
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None)
        ax.set_title(label)
    if roles:
        ax = axes[0][-1]
        for key, label in roles:
            pts = [(r["step"], r[key]) for r in rows if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, label=label)
        ax.set_title("role utilisation (busy fraction)")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
