"""Loss-step overhead of each entropy/covariance control vs plain PPO-clip, one run, same inputs.

A "loss step" is what the learner does after the model's forward: fused log-prob + entropy from the
logits (chunked), the policy loss with its controls, and backward to the logits. Timed as the median
of `--reps` runs per config, interleaved so machine noise hits every config alike.

    python bench/bench_loss_overhead.py [--seqs 16] [--len 128] [--vocab 49152]
"""
from __future__ import annotations

import argparse
import statistics
import time



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqs", type=int, default=16)
    ap.add_argument("--len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()

    import torch
    from pydantic import TypeAdapter

    from forkrl.learner.entropy import token_logprobs_and_entropy
    from forkrl.learner.loss_config import PolicyLossConfig
    from forkrl.learner.losses import LossInputs, compute_policy_loss

    configs = {
        "ppo_clip": {"type": "ppo_clip"},
        "clip_higher": {"type": "ppo_clip", "eps_high": 0.28},
        "clip_cov": {"type": "clip_cov"},
        "kl_cov": {"type": "kl_cov"},
        "forking(ppo)": {"type": "ppo_clip", "eps_high": 0.28, "forking": {"rho": 0.2}},
        "sent": {"type": "sent"},
        "forking+kl_cov": {"type": "kl_cov", "forking": {"rho": 0.2}},
    }
    adapter = TypeAdapter(PolicyLossConfig)
    cfgs = {k: adapter.validate_python(v) for k, v in configs.items()}
    torch.manual_seed(0)
    dev = torch.device(args.device)
    B, T, V = args.seqs, args.len, args.vocab
    logits0 = torch.randn(B, T, V, device=dev) * 2
    labels = torch.randint(0, V, (B, T), device=dev)
    mask = (torch.rand(B, T, device=dev) > 0.1).float()
    adv = torch.randn(B, 1, device=dev).expand(B, T).contiguous()
    with torch.no_grad():
        old = token_logprobs_and_entropy(logits0, labels)[0] + 0.05 * torch.randn(B, T, device=dev)
    ref = old + 0.05 * torch.randn(B, T, device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step(cfg) -> float:
        logits = logits0.clone().requires_grad_(True)
        sync()
        t0 = time.perf_counter()
        lp, ent = token_logprobs_and_entropy(logits, labels)
        inputs = LossInputs(logprobs=lp, old_logprobs=old, advantages=adv, mask=mask, entropy=ent,
                            ref_logprobs=ref, generator=torch.Generator().manual_seed(0))
        loss, _ = compute_policy_loss(inputs, cfg)
        loss.backward()
        sync()
        return time.perf_counter() - t0

    for cfg in cfgs.values():
        step(cfg)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in cfgs}
    for _ in range(args.reps):
        for name, cfg in cfgs.items():
            times[name].append(step(cfg))
    base = statistics.median(times["ppo_clip"])
    print(f"loss step on {B}x{T} tokens, vocab {V} (logits {B * T * V * 4 / 2**20:.0f} MiB), "
          f"median of {args.reps}, device {dev}, torch threads {torch.get_num_threads()}")
    print(f"{'config':16s} {'ms':>9s} {'vs ppo_clip':>12s}")
    for name in cfgs:
        med = statistics.median(times[name])
        print(f"{name:16s} {med * 1e3:9.1f} {med / base:11.3f}x")


if __name__ == "__main__":
    main()
