"""Side-by-side entropy-control comparison: same seed, data and step budget, one table, one PNG.

Runs each recipe through the real CLI (sequentially: they would share the same CPUs anyway), then
compares policy-entropy curves and held-out accuracy.

    python bench/compare_methods.py recipes/grpo.yaml recipes/clip_cov.yaml recipes/kl_cov.yaml \
        recipes/forking.yaml --out runs/compare [--skip-existing] [-- key=value ...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--out", default="runs/compare")
    ap.add_argument("--skip-existing", action="store_true")
    ap.add_argument("--override", action="append", default=[], help="key=value applied to every run")
    args = ap.parse_args()

    from orchestrator.metrics import read_metrics

    out = Path(args.out)
    runs = {}
    for recipe in args.recipes:
        name = Path(recipe).stem
        run_dir = out / name
        runs[name] = run_dir
        if args.skip_existing and (run_dir / "final_model").exists():
            continue
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "orchestrator.cli", "train", recipe, "--run-dir", str(run_dir),
               "logging.progress=false", "checkpoint.save_hf_at_end=true", *args.override]
        print("$", " ".join(cmd), flush=True)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"{name}.log", "w") as log:
            rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        print(f"  {name}: exit {rc} in {time.perf_counter() - t0:.0f}s", flush=True)

    table = []
    curves = {}
    for name, run_dir in runs.items():
        rows = read_metrics(run_dir / "metrics.jsonl")
        ent = [(r["step"], r["policy/entropy"]) for r in rows if "policy/entropy" in r]
        acc = [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
        rew = [r["reward/mean"] for r in rows if "reward/mean" in r]
        curves[name] = (ent, acc)
        table.append((name, ent[0][1] if ent else float("nan"), ent[-1][1] if ent else float("nan"),
                      acc[0][1] if acc else float("nan"), acc[-1][1] if acc else float("nan"),
                      max(a for _, a in acc) if acc else float("nan"),
                      sum(rew[-3:]) / max(1, len(rew[-3:]))))
    print(f"\n{'method':10s} {'H step1':>8s} {'H last':>8s} {'H drop':>7s} {'acc@0':>6s} {'acc last':>8s} "
          f"{'acc best':>8s} {'train R last3':>13s}")
    for name, h0, h1, a0, a1, ab, r in table:
        print(f"{name:10s} {h0:8.3f} {h1:8.3f} {h0 - h1:7.3f} {a0:6.3f} {a1:8.3f} {ab:8.3f} {r:13.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (ent, acc) in curves.items():
        ax1.plot([s for s, _ in ent], [h for _, h in ent], marker="o", ms=3, label=name)
        ax2.plot([s for s, _ in acc], [a for _, a in acc], marker="o", label=name)
    ax1.set(title="policy entropy (train tokens)", xlabel="step")
    ax2.set(title="held-out pass@1 (greedy)", xlabel="step")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    png = out / "compare.png"
    fig.savefig(png, dpi=110)
    print(f"\nplot: {png}")


if __name__ == "__main__":
    main()
