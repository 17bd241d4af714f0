"""What other processes cost the learner's train step on a small CPU (issue 8: the 3-8 s per step
the job adds around the learner).

    python bench/learner_interference.py ticker [--loads 0/0,1/10,3/10,0/10x16] [--model DIR]
    python bench/learner_interference.py job [--steps 3] [--recipe recipes/default.yaml]

ticker  The plain `LearnerWorker` (no Ray, 2 threads, packed, micro-batch 16, ZeRO-2: the peer_trl
        shape) trains on bench_learner's 64-sequence batch, once quiet and once per load beside it.
        A load BUSY/PERIOD is a separate process that spins BUSY ms every PERIOD ms on the same
        cores: BUSY/PERIOD of one core. BUSY/PERIODxN runs N such threads in it; 0/10x16 is 16
        threads that only wake every 10 ms, like the job's idle gloo event loops (gloo's TCP loop
        polls with a 10 ms timeout; the idle rollout actor held 13 such threads). Measured: 0/10x16
        makes ~3,000 voluntary context switches/s, GIL handoffs adding to the 1,600 timer wakeups.
        Prints each step's wall and CPU seconds.
job     The peer_trl-shaped job (8 prompts x 8 samples, <= 96 new tokens, lr 1e-5, no evaluation or
        checkpoints) through the real CLI, while every process's CPU time is sampled from /proc
        twice a second. Prints the CPU seconds of every other process while the learner ran at
        >= 1.5 cores (its train phase), and the job's own `time/train` per step.

Why both: a learner whose two OpenMP threads share two cores with anything else stalls at every
barrier where one of them was preempted, so a foreign load costs it more than its share. `ticker`
measures that cost for a known load; `job` measures the load the job itself puts beside the
learner. Run on a quiet machine: anything else running is one more load.
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path


HZ = os.sysconf("SC_CLK_TCK")


def spin(busy_ms: float, period_ms: float, stop, threads: int = 1) -> None:
    """The load: `threads` threads that each spin `busy_ms`, then sleep the rest of `period_ms`,
    until `stop` is set."""
    import threading

    def one() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            while time.perf_counter() - start < busy_ms / 1000:
                pass
            time.sleep(max(0.0, (period_ms - busy_ms) / 1000))

    workers = [threading.Thread(target=one, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def parse_load(spec: str) -> tuple[float, float, int]:
    """'BUSY/PERIOD' or 'BUSY/PERIODxTHREADS' (ms) -> (busy, period, threads); '0/0' is quiet."""
    shape, _, threads = spec.partition("x")
    busy, period = (float(x) for x in shape.split("/"))
    n = int(threads) if threads else (1 if period > 0 else 0)
    if busy < 0 or period < 0 or busy > period or n < 0 or (n > 0 and period == 0):
        raise ValueError(f"--loads: {spec!r} is not BUSY/PERIOD[xTHREADS] with 0 <= BUSY <= PERIOD, PERIOD > 0")
    return busy, period, n


def ticker(args) -> None:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import torch

    from bench_learner import make_batch
    from benchlib import bench_model
    from forkrl.learner.config import LearnerConfig
    from forkrl.learner.worker import LearnerWorker

    torch.set_num_threads(args.threads)
    model = bench_model(args.model)
    worker = LearnerWorker(LearnerConfig(micro_batch_size=16, zero_stage=2, lr=1e-6, packing=True), model)
    batch = make_batch(model, args.batch, args.group)
    worker.train_step(batch)  # warm-up
    print(f"model {model}; {batch.num_seqs} sequences, {batch.num_tokens} tokens; {args.threads} threads, "
          f"{os.cpu_count()} cores", flush=True)
    # spawn, not fork: a forked child shares the learner's ~7 GB copy-on-write, and the learner's
    # next writes would fault page by page (the first step after a fork measured 25% slower).
    ctx = mp.get_context("spawn")
    for spec in args.loads.split(","):
        busy, period, threads = parse_load(spec)
        stop, load = ctx.Event(), None
        if threads > 0:
            load = ctx.Process(target=spin, args=(busy, period, stop, threads), daemon=True)
            load.start()
        steps = []
        for _ in range(args.steps):
            c0, t0 = os.times(), time.perf_counter()
            worker.train_step(batch)
            wall, c1 = time.perf_counter() - t0, os.times()
            steps.append(f"{wall:.2f} s (cpu {c1.user - c0.user + c1.system - c0.system:.1f} s)")
        stop.set()
        if load is not None:
            load.join()
        share = (f"{100 * busy * threads / period:.0f}% of one core, {threads} thread(s) every {period:g} ms"
                 if threads > 0 else "quiet")
        print(f"load {spec:>8} ({share:>34}): " + ", ".join(steps), flush=True)


def snapshot() -> dict[int, tuple[str, int]]:
    """{pid: (command line, CPU ticks so far)} of every process."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        words = cmd.split()
        # Ray's Python helpers by script (python log_monitor.py); not the raylet, whose arguments
        # name a .py too.
        python = bool(words) and Path(words[0]).name.startswith("python")
        script = next((w for w in words[1:] if w.endswith(".py")), None) if python else None
        name = (f"{Path(words[0]).name} {Path(script).name}" if script else cmd.strip()[:80]
                or stat[stat.find("(") + 1:stat.rfind(")")])
        out[int(pid)] = (name, cpu_ticks(stat))
    return out


def cpu_ticks(stat: str) -> int:
    """utime + stime of a /proc/<pid>/stat line (fields 14 and 15), in clock ticks. The command name
    (field 2, in parentheses) may hold spaces and parentheses: fields are counted after its last ')'."""
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def train_phase_load(snaps: list[tuple[float, dict]], me: set[int]) -> tuple[float, float, collections.Counter]:
    """(seconds, learner CPU seconds, {process: CPU seconds}) over the sampling intervals where the
    busiest learner actor ran at >= 1.5 cores.

    A lower bound of the load: an interval where neighbours took the most from the learner may fall
    under the threshold and be left out."""
    others: collections.Counter = collections.Counter()
    wall = learner = 0.0
    for (t0, a), (t1, b) in zip(snaps, snaps[1:]):
        used = {p: ((b[p][1] - a[p][1]) / HZ, b[p][0]) for p in b if p in a and p not in me}
        ranks = [p for p, (_, name) in used.items() if name.startswith("ray::LearnerActor")]
        rank = max(ranks, key=lambda p: used[p][0], default=None)
        if rank is None or used[rank][0] / (t1 - t0) < 1.5:
            continue
        wall += t1 - t0
        learner += used[rank][0]
        for p, (cpu, name) in used.items():
            if p != rank and cpu > 0:
                others[name] += cpu
    return wall, learner, others


def job(args) -> None:
    import subprocess
    import tempfile

    from benchlib import ROOT, recipe_path

    run_dir = Path(tempfile.mkdtemp(prefix="forkrl_interference_"))
    cmd = [sys.executable, "-m", "forkrl.orchestrator.cli", "train", recipe_path(args.recipe), "--run-dir",
           str(run_dir), "logging.progress=false", f"trainer.steps={args.steps}", "trainer.prompts_per_step=8",
           "rollout.samples_per_prompt=8", "rollout.max_new_tokens=96", "learner.lr=1e-5",
           "eval.every_steps=0", "eval.at_start=false", "checkpoint.every_steps=0",
           "checkpoint.save_hf_at_end=false", "logging.plot=false", *args.override]
    print("$", " ".join(cmd), flush=True)
    snaps = []
    with open(run_dir / "job.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            snaps.append((time.time(), snapshot()))
            time.sleep(0.5)
    if proc.returncode != 0:
        sys.exit(f"the job failed (exit {proc.returncode}); its log: {run_dir / 'job.log'}")
    wall, learner, others = train_phase_load(snaps, {os.getpid()})
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    print("time/train per step: " + ", ".join(f"{r['time/train']:.2f}" for r in rows if "time/train" in r) + " s")
    print(f"train phase: {wall:.1f} s, learner {learner:.1f} CPU s ({learner / max(wall, 1e-9):.2f} cores); "
          "other processes meanwhile (CPU s):")
    for name, cpu in others.most_common(args.top):
        print(f"  {cpu:6.2f}  {name}")
    total = sum(others.values())
    print(f"  {total:6.2f}  all others = {100 * total / max(wall, 1e-9):.1f}% of one core", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("ticker", help="the plain learner beside a known load")
    t.add_argument("--model", default=None)
    t.add_argument("--loads", default="0/0,1/10,3/10",
                   help="BUSY/PERIOD[xTHREADS] in ms, comma-separated (0/0: quiet)")
    t.add_argument("--steps", type=int, default=2)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--group", type=int, default=8)
    j = sub.add_parser("job", help="the load the job puts beside its learner")
    j.add_argument("--recipe", default="recipes/default.yaml")
    j.add_argument("--steps", type=int, default=3)
    j.add_argument("--top", type=int, default=15)
    j.add_argument("override", nargs="*", help="extra config overrides (key=value)")
    args = ap.parse_args()
    ticker(args) if args.mode == "ticker" else job(args)


if __name__ == "__main__":
    main()
