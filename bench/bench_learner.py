"""Learner throughput and memory: seconds per train step, tokens/s, effective GFLOP/s (6 * params *
tokens per forward+backward) and peak RSS, for learner variants side by side in one run.

    python bench/bench_learner.py [--model DIR] [--batch 32] [--group 8] [--micro 16] [--steps 2]
                                  [--variants full,loss,loss+buckets,packed]

Variants (each in a fresh child process, so that its peak RSS is its own; see CHILD_ENV):
  full          the LM head on every position (the learner before logits were restricted to the
                loss tokens), DeepSpeed's default ZeRO buckets (5e8 elements)
  loss          the LM head only where the loss reads a token, DeepSpeed's default buckets
  loss+buckets  the same with ZeRO buckets sized to the model (learner.zero_bucket_size='auto')
  packed        the same, packed: each micro-batch as one row without padding, each distinct prompt
                computed once (learner.packing, learner/packing.py; the three above run padded)

The batch has the default job's shape: real arithmetic prompts through the chat template (about 55
tokens with SmolLM2's), each repeated --group times (the job's samples per prompt), and random
response tokens of 24..96 tokens (recipes/default.yaml's max_new_tokens is 96), right-padded, about
150 positions. "positions" is what the model computes per step: B x L per padded micro-batch, the
packed rows' lengths when packed. Default model: the prepared SmolLM2-135M
(`forkrl models prepare smollm2-135m`). One rank without Ray, on CPU (DS_ACCELERATOR=cpu) unless
a GPU is given.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


VARIANTS = ("full", "loss", "loss+buckets", "packed")
# glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold in its heap, so a CPU
# process's RSS shows the allocator's history (activations are a few MiB each) more than the live
# tensors. A fixed 1 MiB threshold returns every larger block to the OS when freed: RSS then tracks
# the live memory. It costs page faults, in every variant alike.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576"}
DEEPSPEED_DEFAULT_BUCKET = 500_000_000


def make_batch(model_path: str, batch: int, group: int = 1, seed: int = 0):
    import torch
    from transformers import AutoConfig

    from benchlib import arithmetic_prompt_ids
    from forkrl.learner.types import TrainBatch

    vocab = AutoConfig.from_pretrained(model_path).vocab_size
    g = torch.Generator().manual_seed(seed)
    distinct = arithmetic_prompt_ids(model_path, -(-batch // group))
    prompts = [distinct[i // group] for i in range(batch)]
    lengths = torch.randint(24, 97, (batch,), generator=g).tolist()
    width = max(len(p) + r for p, r in zip(prompts, lengths))
    ids = torch.zeros(batch, width, dtype=torch.long)
    attn = torch.zeros(batch, width, dtype=torch.long)
    loss_mask = torch.zeros(batch, width)
    for i, (p, r) in enumerate(zip(prompts, lengths)):
        ids[i, :len(p)] = torch.tensor(p)
        ids[i, len(p):len(p) + r] = torch.randint(0, vocab, (r,), generator=g)
        attn[i, :len(p) + r] = 1
        loss_mask[i, len(p):len(p) + r] = 1.0
    adv = torch.randn(batch, 1, generator=g).expand(batch, width).contiguous()
    return TrainBatch(ids, attn, loss_mask, adv, torch.zeros(batch, width))


def full_logits_worker_class():
    """The learner as it was before logits were restricted to the loss tokens: the LM head runs on
    every position of the micro-batch (kept here as the baseline of the comparison)."""
    import torch

    from forkrl.learner.entropy import token_logprobs_and_entropy
    from forkrl.learner.worker import LearnerWorker

    class FullLogitsWorker(LearnerWorker):
        def _forward(self, model, mb, grad, entropy_grad=False, positions="loss"):
            ids = mb.input_ids.to(self.device)
            attn = mb.attention_mask.to(self.device)
            with torch.set_grad_enabled(grad):
                logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
                return token_logprobs_and_entropy(logits[:, :-1], ids[:, 1:], mb.temperature,
                                                  self.cfg.logprob_chunk_size, entropy_grad=entropy_grad)

    return FullLogitsWorker


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process, so that the peak of the timed steps
    is measured without model loading; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def run_variant(args, variant: str) -> dict:
    import torch

    from forkrl.learner.config import LearnerConfig
    from forkrl.learner.worker import LearnerWorker

    from forkrl.learner.packing import plan_packing

    cls = full_logits_worker_class() if variant == "full" else LearnerWorker
    bucket = "auto" if variant in ("loss+buckets", "packed") else DEEPSPEED_DEFAULT_BUCKET
    cfg = LearnerConfig(micro_batch_size=args.micro, zero_stage=args.zero, lr=1e-6, zero_bucket_size=bucket,
                        packing=variant == "packed", gpus_per_rank=1 if torch.cuda.is_available() else 0)
    worker = cls(cfg, args.model)
    if worker.packing != (variant == "packed"):
        raise SystemExit(f"variant {variant}: the worker's packing is {worker.packing}")
    batch = make_batch(args.model, args.batch, args.group)
    mbs = batch.micro_batches(args.micro)
    positions = (sum(plan_packing(mb.input_ids, mb.attention_mask, mb.loss_mask[:, 1:] > 0).num_positions
                     for mb in mbs) if worker.packing else sum(mb.input_ids.numel() for mb in mbs))
    worker.train_step(batch)  # warm-up (allocator, first-step optimizer state)
    after_warmup = rss_mib()
    step_peak = reset_peak_rss()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        worker.train_step(batch)
        times.append(time.perf_counter() - start)
    return {"variant": variant, "times": times, "tokens": batch.num_tokens,
            "loss_tokens": batch.num_loss_tokens, "positions": positions,
            "params": worker.param_stats()["num_params"], "vocab": worker.engine.module.config.vocab_size,
            "dtype": worker.dtype_name, "bucket": worker.ds_config["zero_optimization"]["reduce_bucket_size"],
            "rss_after_warmup_mib": after_warmup, "peak_rss_mib": peak_rss_mib(), "step_peak": step_peak,
            "process_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model dir or alias (default: smollm2-135m)")
    parser.add_argument("--batch", type=int, default=32, help="sequences per train step")
    parser.add_argument("--group", type=int, default=8, help="samples per prompt (rows sharing a prompt)")
    parser.add_argument("--micro", type=int, default=16, help="micro-batch size")
    parser.add_argument("--steps", type=int, default=2, help="timed steps (after one warm-up)")
    parser.add_argument("--zero", type=int, default=2, help="ZeRO stage")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of " + ", ".join(VARIANTS))
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # the child's one variant
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from benchlib import bench_model

    args.model = bench_model(args.model)
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args, args.variant)), flush=True)
        return

    results = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        cmd = [sys.executable, __file__, "--model", args.model, "--batch", str(args.batch), "--group",
               str(args.group), "--micro",
               str(args.micro), "--steps", str(args.steps), "--zero", str(args.zero), "--variant", variant]
        out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **CHILD_ENV))
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if out.returncode != 0 or line is None:
            raise SystemExit(f"variant {variant} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(line[len("RESULT "):]))

    first = results[0]
    print(f"model      {args.model} ({first['params'] / 1e6:.1f}M params, vocab {first['vocab']}, "
          f"dtype {first['dtype']}, ZeRO-{args.zero}, {first['threads']} threads)")
    print(f"batch      {args.batch} seqs ({args.group} per prompt), micro-batch {args.micro}: "
          f"{first['tokens']} real tokens, {first['loss_tokens']} loss tokens")
    peak = "peak RSS (steps)" if all(r["step_peak"] for r in results) else "peak RSS (process)"
    print(f"{'variant':<14} {'positions':>9} {'s/step (median)':>15} {'all steps':>18} {'tokens/s':>9} {'GFLOP/s':>8} "
          f"{'bucket':>11} {'RSS warm':>9} {peak:>18}")
    for r in results:
        median = statistics.median(r["times"])
        print(f"{r['variant']:<14} {r['positions']:>9} {median:>15.2f} {', '.join(f'{t:.2f}' for t in r['times']):>18} "
              f"{r['tokens'] / median:>9.0f} {6 * r['params'] * r['tokens'] / median / 1e9:>8.1f} "
              f"{r['bucket']:>11,} {r['rss_after_warmup_mib']:>7.0f}Mi {r['peak_rss_mib']:>16.0f}Mi")
    print("note: shared CPUs make single steps noisy; rerun before trusting a small difference")


if __name__ == "__main__":
    main()
