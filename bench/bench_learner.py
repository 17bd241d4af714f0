"""Learner throughput: tokens/s, seconds per train step and achieved GFLOP/s (6 * params * tokens
per forward+backward) against a bare fp32 matmul peak measured in the same run.

    python bench/bench_learner.py [--model DIR] [--batch 4] [--seq 256] [--steps 3]

Default model: the prepared SmolLM2-135M at ~/.cache/forkrl/models/smollm2-135m if present, else
a small random Llama built here. Runs one rank without Ray (DS_ACCELERATOR=cpu unless a GPU is used).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_MODEL = Path("~/.cache/forkrl/models/smollm2-135m").expanduser()


def matmul_peak_gflops(n: int = 2048, reps: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def random_model(path: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=8192, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=4, help="sequences per train step")
    parser.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--micro", type=int, default=4, help="micro-batch size")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    parser.add_argument("--zero", type=int, default=2, help="ZeRO stage")
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")

    import torch

    from learner.config import LearnerConfig
    from learner.types import TrainBatch
    from learner.worker import LearnerWorker

    tmp = tempfile.TemporaryDirectory()
    model = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.exists() else random_model(Path(tmp.name)))
    peak = matmul_peak_gflops()
    cfg = LearnerConfig(micro_batch_size=args.micro, zero_stage=args.zero, lr=1e-6)
    worker = LearnerWorker(cfg, str(model))
    params = worker.param_stats()["num_params"]
    vocab = worker.engine.module.config.vocab_size

    B, T = args.batch, args.seq
    ids = torch.randint(0, vocab, (B, T))
    loss_mask = torch.zeros(B, T)
    loss_mask[:, T // 4:] = 1.0
    adv = torch.randn(B, 1).expand(B, T).contiguous()
    batch = TrainBatch(ids, torch.ones(B, T, dtype=torch.long), loss_mask, adv, torch.zeros(B, T))

    worker.train_step(batch)  # warm-up (allocator, first-step optimizer state)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        worker.train_step(batch)
        times.append(time.perf_counter() - start)
    step_s, best_s = sorted(times)[len(times) // 2], min(times)
    tokens = B * T
    achieved, achieved_best = (6 * params * tokens / t / 1e9 for t in (step_s, best_s))
    print(f"model            {model} ({params / 1e6:.1f}M params, vocab {vocab}, "
          f"dtype {worker.dtype_name}, ZeRO-{args.zero})")
    print(f"threads          {torch.get_num_threads()}")
    print(f"batch            {B} x {T} tokens, micro-batch {args.micro}")
    print(f"step seconds     median {step_s:.2f}  (all: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"tokens/s         {tokens / step_s:.0f} median, {tokens / best_s:.0f} best")
    print(f"achieved GFLOP/s {achieved:.1f} median, {achieved_best:.1f} best "
          f"(6 * params * tokens / step time)")
    print(f"matmul peak      {peak:.1f} GFLOP/s fp32  -> {100 * achieved / peak:.0f}% of peak "
          f"(median), {100 * achieved_best / peak:.0f}% (best)")
    print("note: shared CPUs make single steps noisy; compare best-of figures across runs")


if __name__ == "__main__":
    main()
