"""Weight push learner -> rollout engine: seconds and GB/s per transport (common.transports), the same
model, one run.

    python bench/bench_sync.py [--model DIR] [--reps 3]
"""
from __future__ import annotations

import argparse
import statistics

from benchlib import bench_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import ray

    from forkrl.actors.config import RolloutConfig
    from forkrl.actors.rollout import RolloutGroup
    from forkrl.common.transports import TRANSPORTS
    from forkrl.learner.config import LearnerConfig
    from forkrl.learner.group import LearnerGroup
    from forkrl.orchestrator.weights import WeightPusher

    model = bench_model(args.model)
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    rollout = RolloutGroup(RolloutConfig(kv_cache_gb=0.5, max_model_len=512), model)
    for transport in TRANSPORTS:  # every transport there is, a new one included
        lcfg = LearnerConfig(weight_sync={"transport": transport})
        learner = LearnerGroup(lcfg, model)
        pusher = WeightPusher(learner, rollout, lcfg.weight_sync, lcfg.resolve_sync_backend())
        runs = [pusher.push() for _ in range(args.reps)]
        secs = [r["sync/seconds"] for r in runs]
        gb = runs[0]["sync/bytes"] / 1e9
        med = statistics.median(secs)
        print(f"{transport:12s}: {gb:.3f} GB per push, median {med:.3f}s over {args.reps} "
              f"(min {min(secs):.3f}s) = {gb / med:.2f} GB/s")
        learner.shutdown()
    rollout.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
