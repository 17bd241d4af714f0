"""Verifier throughput: samples/s for math and for code (HumanEval canonical solutions) at pool sizes 1, 2,
with code sandboxed both ways: "fallback" (rlimits + private uid + netns: the isolation before bubblewrap)
and "bwrap" (rewards.sandbox's bubblewrap sandbox). Math does not touch the sandbox: it is timed once per
pool size.

Run: python bench/bench_verifier.py [--math N] [--code N] [--isolation fallback bwrap]. Starts a local
Ray (2 CPUs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])


def _samples(n_math: int, n_code: int):
    from forkrl.rewards.datasets import humaneval_answer, load_humaneval
    from forkrl.rewards.types import Sample

    answers = ["\\frac{1}{2}", "0.5", "\\sqrt{8}", "\\{1,2\\}", "[0,1)", "42", "x^2+1", "3\\pi"]
    preds = ["1/2", "\\frac{2}{4}", "2\\sqrt{2}", "\\{2,1\\}", "[0, 1]", "41", "1+x^2", "9.42"]
    math_s = [Sample(f"m{i}", "", f"... so \\boxed{{{preds[i % 8]}}} (v{i})", answers[i % 8]) for i in range(n_math)]
    probs = load_humaneval()
    code_s = [Sample(f"c{i}", "", probs[i % 164]["canonical_solution"], humaneval_answer(probs[i % 164]), "code")
              for i in range(n_code)]
    return math_s, code_s


def _time(pool, batch) -> tuple[float, int]:
    t0 = time.perf_counter()
    scores = pool.score(batch)
    return time.perf_counter() - t0, sum(s.correct for s in scores)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--math", type=int, default=400)
    ap.add_argument("--code", type=int, default=40)
    ap.add_argument("--isolation", nargs="+", default=["fallback", "bwrap"], choices=["fallback", "bwrap", "auto"])
    args = ap.parse_args()

    import ray

    from forkrl.rewards.config import CodeRewardConfig, RewardConfig
    from forkrl.rewards.pool import VerifierPool

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    math_s, code_s = _samples(args.math, args.code)
    for workers in (1, 2):
        for i, isolation in enumerate(args.isolation):
            pool = VerifierPool(RewardConfig(num_workers=workers, code=CodeRewardConfig(isolation=isolation)))
            pool.score(math_s[:8] + code_s[:2])  # warm-up: imports, sympy caches, the bwrap probe
            batches = [("code", code_s)] if i else [("math", math_s), ("code", code_s)]
            for name, batch in batches:
                dt, ok = _time(pool, batch)
                label = f"{name} ({isolation})" if name == "code" else name
                print(f"{label:16s} workers={workers}  {len(batch) / dt:8.1f} samples/s  ({len(batch)} in {dt:.2f}s, {ok} correct)",
                      flush=True)
            pool.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
