"""Verifier throughput: samples/s for math and for code (HumanEval canonical solutions) at pool sizes 1, 2.

Run: python bench/bench_verifier.py [--math N] [--code N]. Starts a local Ray (2 CPUs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])  # runnable from a checkout without `pip install -e .`
sys.path.insert(0, ROOT)


def _samples(n_math: int, n_code: int):
    from rewards.datasets import humaneval_answer, load_humaneval
    from rewards.types import Sample

    answers = ["\\frac{1}{2}", "0.5", "\\sqrt{8}", "\\{1,2\\}", "[0,1)", "42", "x^2+1", "3\\pi"]
    preds = ["1/2", "\\frac{2}{4}", "2\\sqrt{2}", "\\{2,1\\}", "[0, 1]", "41", "1+x^2", "9.42"]
    math_s = [Sample(f"m{i}", "", f"... so \\boxed{{{preds[i % 8]}}} (v{i})", answers[i % 8]) for i in range(n_math)]
    probs = load_humaneval()
    code_s = [Sample(f"c{i}", "", probs[i % 164]["canonical_solution"], humaneval_answer(probs[i % 164]), "code")
              for i in range(n_code)]
    return math_s, code_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--math", type=int, default=400)
    ap.add_argument("--code", type=int, default=40)
    args = ap.parse_args()

    import ray

    from rewards.config import RewardConfig
    from rewards.pool import VerifierPool

    pythonpath = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    math_s, code_s = _samples(args.math, args.code)
    for workers in (1, 2):
        pool = VerifierPool(RewardConfig(num_workers=workers))
        pool.score(math_s[:8] + code_s[:2])  # warm-up: imports, sympy caches
        for name, batch in (("math", math_s), ("code", code_s)):
            t0 = time.perf_counter()
            scores = pool.score(batch)
            dt = time.perf_counter() - t0
            ok = sum(s.correct for s in scores)
            print(f"{name:4s} workers={workers}  {len(batch) / dt:8.1f} samples/s  ({len(batch)} in {dt:.2f}s, {ok} correct)")
        pool.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
