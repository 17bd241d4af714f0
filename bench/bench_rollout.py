"""Generation throughput through forkrl's rollout actor (Ray + vLLM) vs the bare vLLM engine,
measured side by side in one process tree, alternating, best of `--reps`.

    python bench/bench_rollout.py [--model DIR] [--prompts 16] [--n 8] [--max-tokens 64]
                                  [--dtypes float32 bfloat16]

With several `--dtypes`, one bare engine per dtype runs in the same alternation (ours uses the first),
so the engine's compute dtype is compared side by side on this CPU (bf16 pays only where the CPU has
bf16 dot-product instructions, e.g. AVX512-BF16 or AMX; `lscpu` says).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from benchlib import arithmetic_prompt_ids, bench_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                    help="bare-engine compute dtypes, alternated; forkrl's rollout actor uses the first")
    ap.add_argument("--cpus-per-actor", type=float, default=2.0,
                    help="Ray sets OMP_NUM_THREADS to this: the engine's thread count")
    args = ap.parse_args()

    import ray
    from vllm import LLM, SamplingParams

    from forkrl.actors.config import RolloutConfig
    from forkrl.actors.engines import cpu_scheduling_args
    from forkrl.actors.rollout import RolloutGroup

    model = bench_model(args.model)
    prompts = arithmetic_prompt_ids(model, args.prompts)
    cfg = RolloutConfig(cpus_per_actor=args.cpus_per_actor, samples_per_prompt=args.n, max_new_tokens=args.max_tokens, kv_cache_gb=1.0,
                        max_model_len=1024, dtype=args.dtypes[0])
    ray.init(address="local", num_cpus=max(2, int(args.cpus_per_actor + 0.999)), include_dashboard=False, log_to_driver=False)
    group = RolloutGroup(cfg, model)
    bares = {dt: LLM(model=model, dtype=dt, enforce_eager=True, max_model_len=1024,
                     kv_cache_memory_bytes=2**30, seed=0, logprobs_mode="processed_logprobs",
                     **cpu_scheduling_args(cfg))  # same scheduler settings as ours (see that function)
             for dt in args.dtypes}

    def bare_runner(dtype: str):
        def run_bare(seed: int) -> tuple[int, float]:
            sp = [SamplingParams(n=args.n, temperature=1.0, max_tokens=args.max_tokens, logprobs=0, seed=seed + i)
                  for i in range(len(prompts))]
            t0 = time.perf_counter()
            outs = bares[dtype].generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
            dt = time.perf_counter() - t0
            return sum(len(c.token_ids) for o in outs for c in o.outputs), dt
        return run_bare

    def run_ours(seed: int) -> tuple[int, float]:
        t0 = time.perf_counter()  # driver wall time: includes Ray dispatch and result transfer
        res = group.generate(prompts, seed=seed)
        return res.tokens, time.perf_counter() - t0

    runners = [(f"bare {dt}", bare_runner(dt)) for dt in args.dtypes] + [(f"ours {args.dtypes[0]}", run_ours)]
    for _, fn in runners:  # warm-up
        fn(0)
    best = {name: 0.0 for name, _ in runners}
    for rep in range(args.reps):
        for name, fn in runners:
            toks, dt = fn(100 + rep)
            print(f"{name:15s} rep {rep}: {toks} tokens in {dt:.2f}s = {toks / dt:.1f} tok/s", flush=True)
            best[name] = max(best[name], toks / dt)
    first = f"bare {args.dtypes[0]}"
    print(f"\nmodel {model}, {args.prompts} prompts x {args.n} samples, <= {args.max_tokens} new tokens, "
          f"{args.cpus_per_actor:g} threads, best of {args.reps}")
    for name, _ in runners:
        print(f"{name:15s}: {best[name]:.1f} tok/s ({best[name] / best[first]:.2f}x {first})")
    group.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
