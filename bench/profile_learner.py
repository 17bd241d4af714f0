"""Where the learner's train step goes: forward / backward / optimizer seconds, the top operators
(torch.profiler), and how close the matmuls run to this machine's matmul peak, measured in the same run.

    python bench/profile_learner.py [--model DIR] [--batch 64] [--group 8] [--micro 16] [--zero 2]
                                    [--steps 2] [--top 15]

The batch is bench_learner's (real arithmetic prompts x --group samples, random 24..96-token
responses), the learner the product's `LearnerWorker` (packed, ZeRO buckets 'auto'), one rank, no Ray,
on CPU unless a GPU is given. Why a separate bench: bench_learner says how fast each learner variant
is; this one says what the packed step spends its time on, so that a speed target can be checked
against the arithmetic it needs (the matmuls' FLOPs at the measured peak) before anyone tunes.

The peak is the best of a few fp32 matmuls of the model's own shapes (hidden x intermediate, hidden x
vocab) at the step's thread count; "mm at % of peak" is the profiler's FLOP count of aten::mm / addmm /
bmm over their self time, against it.
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import time


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm")


def matmul_peak_gflops(hidden: int, inter: int, vocab: int, rows: int = 2048) -> float:
    """Best fp32 GFLOP/s of [rows, hidden] x [hidden, n] for the model's widths (n = inter, vocab)."""
    import torch

    best = 0.0
    for n in (inter, vocab):
        a, b = torch.randn(rows, hidden), torch.randn(hidden, n)
        for _ in range(2):
            a @ b
        reps = max(3, int(2e10 / (2 * rows * hidden * n)))
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * rows * hidden * n * reps / (time.perf_counter() - start) / 1e9)
    return best


def time_phases(engine) -> dict[str, float]:
    """Wrap the DeepSpeed engine's forward / backward / step so that their wall seconds add up here."""
    spent: dict[str, float] = collections.defaultdict(float)
    for name in ("forward", "backward", "step"):
        original = getattr(engine, name)

        def timed(*args, _original=original, _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_name] += time.perf_counter() - start

        setattr(engine, name, timed)
    return spent


def main() -> None:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench_learner import make_batch
    from forkrl.learner.config import LearnerConfig
    from forkrl.learner.worker import LearnerWorker
    from forkrl.orchestrator.models import resolve_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--micro", type=int, default=16)
    ap.add_argument("--zero", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--autocast", choices=("none", "bfloat16"), default="none",
                    help="learner.autocast (bf16 matmuls, fp32 weights)")
    args = ap.parse_args()
    model = str(resolve_model(args.model))

    cfg = LearnerConfig(micro_batch_size=args.micro, zero_stage=args.zero, lr=1e-6, zero_bucket_size="auto",
                        packing=True, autocast=args.autocast,
                        gpus_per_rank=1 if torch.cuda.is_available() else 0)
    worker = LearnerWorker(cfg, model)
    batch = make_batch(model, args.batch, args.group)
    mc = worker.engine.module.config
    peak = matmul_peak_gflops(mc.hidden_size, mc.intermediate_size, mc.vocab_size)
    spent = time_phases(worker.engine)
    worker.train_step(batch)  # warm-up: allocator, first-step optimizer state
    steps = []
    for _ in range(args.steps):
        spent.clear()
        start = time.perf_counter()
        worker.train_step(batch)
        steps.append(dict(spent, total=time.perf_counter() - start))
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        worker.train_step(batch)
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    mm = [e for e in events if e.key in MATMUL_OPS]
    mm_us = sum(e.self_cpu_time_total for e in mm)
    mm_gflops = sum(e.flops for e in mm) / max(mm_us, 1) / 1e3

    print(f"model {model}; {batch.num_seqs} sequences, {batch.num_tokens} tokens, {batch.num_loss_tokens} loss "
          f"tokens; micro {args.micro}, ZeRO {args.zero}, packed {worker.packing}, torch threads "
          f"{torch.get_num_threads()}, autocast {args.autocast}")
    print(f"fp32 matmul peak (model shapes, same threads): {peak:.0f} GFLOP/s")
    for key in ("total", "forward", "backward", "step"):
        values = [s.get(key, 0.0) for s in steps]
        print(f"  {key:<9} median {statistics.median(values):6.2f} s  (min {min(values):.2f}, max {max(values):.2f})")
    print(f"profiled step: matmuls {mm_us / 1e6:.2f} s of {total_us / 1e6:.2f} s self time "
          f"({mm_us / max(total_us, 1):.0%}), {mm_gflops:.0f} GFLOP/s = {mm_gflops / peak:.0%} of peak")
    print(f"top {args.top} operators by self time:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        print(f"  {e.key[:60]:<60} {e.self_cpu_time_total / 1e6:7.2f} s  {e.self_cpu_time_total / total_us:5.1%}"
              f"  calls {e.count}")


if __name__ == "__main__":
    main()
