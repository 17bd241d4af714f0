"""The GPU paths, driven without Ray: the learner on CUDA (DeepSpeed ZeRO-2, bf16, one rank), the HF
engine on CUDA, and the weight push between them, on SmolLM2-135M's architecture.

    python bench/gpu_check.py --model-files DIR --out DIR [--tiny] [--steps 3]

forkrl must be importable as `forkrl.<role>`: on a machine that has torch and transformers but not
forkrl's other dependencies, install the checkout alone first, `pip install --no-deps
--no-build-isolation -e .` (untested on the lent GPU machines since the move to one namespace).

Why this shape: the GPU machines this project is lent have torch and transformers but no Ray, vLLM
or DeepSpeed (DeepSpeed travels as a wheel) and no model hub, and what travels is capped below the
prepared checkpoint's size. So the model is SmolLM2-135M's config and tokenizer (`--model-files`:
the prepared model's folder, its weights unused) with random weights made on the machine, and the
roles are the plain cores the Ray actors wrap (`LearnerWorker`, `HFEngine`). vLLM on GPU is not
covered here. On a machine without CUDA the same script runs the CPU paths (fp32), which is how it
is smoke-tested; `--tiny` shrinks the model to two layers for that.

Each part is checked, and its figures printed and written to OUT/gpu_check.json:
  learner    train steps on the peer_trl-shaped batch (64 sequences, 8 per prompt, 24-96 response
             tokens): seconds per step, tokens/s, peak GPU memory; the loss is finite and the
             parameters move.
  variants   (--variants) train step and log-prob pass for micro-batch 16 / 64 x packed / padded,
             each in a fresh worker: where a small model's GPU step is host-bound, the micro-batch
             and packing that are right on CPU are not.
  profile    (--profile) torch.profiler over one train step: CPU-side and CUDA-side totals, kernel
             launches, the top operators by CPU time.
  engine     HF generate, 8 prompts x 8 samples, `--max-new-tokens`: seconds, tokens/s.
  push       the object-store path's bucket format (learner flats -> the engine's object-store receiver)
             into an engine first filled with NaN: its weights then equal the learner's bit for
             bit, and it received the plan's element count.
  agreement  the engine's sampling log-probs against the learner's log-probs of the same tokens
             (what off-policy correction compares): mean and max |difference|.
  collective the collective push to an engine in a second process, also poisoned first (gloo,
             then NCCL): a position-sensitive checksum of every tensor must match. With one GPU
             NCCL cannot put two ranks on one device: that refusal is recorded and excused.
Exit 1 when a check fails.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import shutil
import sys
import time
import traceback
from pathlib import Path


MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "chat_template.jinja")
TINY = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16}
AGREEMENT_TOL = {"float32": (1e-4, 1e-3), "bfloat16": (0.02, 0.2)}
"""Largest (mean, max) |engine - learner| log-prob accepted per dtype. fp32: the two differ only by
kernel order (measured on CPU: 3e-7 mean, 2e-6 max). bf16: each side rounds its activations
differently (measured on an H200: 0.0034 mean, 0.0156 max); a wrong weight or temperature moves
log-probs by far more than either bound."""


def checksums(named) -> dict[str, float]:
    """{name: a position-sensitive float64 checksum} of each tensor: the dot product with a fixed
    pseudo-random vector, so that swapped, shifted or missing values change it (a plain sum does not
    see two tensors swapped, and is dominated by the norm weights' 1.0s)."""
    import torch

    out = {}
    for name, t in named:
        flat = t.detach().reshape(-1).to("cpu", torch.float64)
        w = torch.rand(flat.numel(), generator=torch.Generator().manual_seed(flat.numel()), dtype=torch.float64)
        out[name] = float(flat @ w)
    return out


def poison(model) -> None:
    """NaN in every parameter of a receiving engine: a tensor the push then skips cannot match."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))


def build_model(files: Path, dst: Path, tiny: bool, seed: int = 0) -> str:
    """SmolLM2-135M's config and tokenizer with random weights (fp32 safetensors) in `dst`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    dst.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (files / name).is_file():
            shutil.copy(files / name, dst / name)
    config = AutoConfig.from_pretrained(dst)
    if tiny:
        for k, v in TINY.items():
            setattr(config, k, v)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(dst)
    return str(dst)


def _cuda_peak_gib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def part(name: str, results: dict, fn) -> None:
    """Run one part; its figures or its error land in results[name] (a failure does not stop the rest)."""
    start = time.perf_counter()
    try:
        out = fn()
        out["ok"] = bool(out.get("ok", True))
    except Exception as e:  # noqa: BLE001 (recorded and reported, the run goes on)
        out = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
    out["wall_s"] = round(time.perf_counter() - start, 2)
    results[name] = out
    print(f"[{name}] " + json.dumps({k: v for k, v in out.items() if k != "trace"}), flush=True)
    if "trace" in out:
        print(out["trace"], flush=True)


def engine_child(model: str, dtype: str, host: str, port: int, backend: str, plan, queue) -> None:
    """Second process: an HF engine that joins the weight group as rank 1 and receives one push."""
    try:
        import torch

        from forkrl.actors.config import RolloutConfig
        from forkrl.actors.engines import HFEngine
        from forkrl.common.transport_collective import Collective

        engine = HFEngine(RolloutConfig(backend="hf", gpus_per_actor=1 if torch.cuda.is_available() else 0,
                                        dtype=dtype), model)
        poison(engine.model)
        engine.open_weight_receiver(Collective(host, port, 2, backend, 60.0), first_rank=1)
        numel = engine.receive_weights(Collective.name, plan, [])
        queue.put({"numel": numel, "checksums": checksums(engine.model.named_parameters())})
    except Exception as e:  # noqa: BLE001 (sent to the parent, which records it)
        queue.put({"error": f"{type(e).__name__}: {e}"})


def collective_push(worker, model: str, dtype: str, backend: str) -> dict:
    """The learner's collective push to an engine in a spawned process over a fresh weight group."""
    from forkrl.common import weights
    from forkrl.common.transport_collective import Collective
    from forkrl.learner.engine_setup import free_port

    port = free_port()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=engine_child, args=(model, dtype, "127.0.0.1", port, backend,
                                                   worker.weight_plan(), queue))
    child.start()
    try:
        worker.open_weight_sender(Collective("127.0.0.1", port, 2, backend, 60.0))  # a fresh group
        sent = worker.send_weights(Collective.name)
        got = queue.get(timeout=120)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    if "error" in got:
        return {"ok": False, "error": got["error"], "sent": sent}
    mine = checksums(worker.named_parameters_cpu().items())
    want = sum(weights.bucket_numel(b) for b in worker.weight_plan())
    bad = [n for n, v in mine.items()
           if not math.isclose(got["checksums"].get(n, math.nan), v, rel_tol=1e-9, abs_tol=1e-9)]
    return {"ok": not bad and got["numel"] == want, "backend": backend, "push_s": round(sent["seconds"], 4),
            "bytes": sent["bytes"], "buckets": sent["buckets"], "numel": got["numel"], "plan_numel": want,
            "mismatched": bad[:5], "compared": len(mine)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-files", required=True, help="folder with SmolLM2's config and tokenizer")
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true", help="two layers (smoke test on CPU)")
    parser.add_argument("--steps", type=int, default=3, help="timed learner steps (after one warm-up)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--micro", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--backends", default="gloo,nccl", help="collective push backends to try")
    parser.add_argument("--big-batch", type=int, default=0,
                        help="also time train steps on a batch of this many sequences (0: skip)")
    parser.add_argument("--variants", action="store_true", help="time micro 16/64 x packed/padded")
    parser.add_argument("--profile", action="store_true", help="torch.profiler over one train step")
    parser.add_argument("--model-dir", default="/tmp/forkrl_gpu_check_model",
                        help="where the random-weight model is written (kept out of --out)")
    args = parser.parse_args()

    import torch
    import transformers

    from forkrl.actors.config import RolloutConfig
    from forkrl.actors.engines import HFEngine
    from bench_learner import make_batch
    from benchlib import arithmetic_prompt_ids
    from forkrl.common import weights
    from forkrl.common.transport_object_store import ObjectStore
    from forkrl.learner.config import LearnerConfig
    from forkrl.learner.worker import LearnerWorker
    from forkrl.orchestrator.batching import pack_batch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    results: dict = {"env": {
        "torch": torch.__version__, "transformers": transformers.__version__, "cuda": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "threads": torch.get_num_threads()}}
    print("[env] " + json.dumps(results["env"]), flush=True)
    model = build_model(Path(args.model_files), Path(args.model_dir), args.tiny)
    state: dict = {}

    def learner() -> dict:
        cfg = LearnerConfig(gpus_per_rank=1 if cuda else 0, micro_batch_size=args.micro, lr=1e-5)
        t0 = time.perf_counter()
        worker = LearnerWorker(cfg, model)
        init_s = time.perf_counter() - t0
        state["worker"] = worker
        batch = make_batch(model, args.batch, args.group)
        before = worker.param_stats()["param_sum"]
        first = worker.train_step(batch)  # warm-up
        times, metrics = [], first
        for _ in range(args.steps):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            metrics = worker.train_step(batch)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        after = worker.param_stats()["param_sum"]
        median = sorted(times)[len(times) // 2]
        return {"ok": math.isfinite(metrics["loss"]) and after != before,
                "dtype": worker.dtype_name, "device": str(worker.device), "packing": worker.packing,
                "zero_stage": cfg.zero_stage, "init_s": round(init_s, 2),
                "params": worker.param_stats()["num_params"], "seqs": batch.num_seqs,
                "tokens": batch.num_tokens, "loss_tokens": batch.num_loss_tokens,
                "step_s": [round(x, 4) for x in times], "median_step_s": round(median, 4),
                "tokens_per_s": round(batch.num_tokens / median), "loss": metrics["loss"],
                "param_sum_before": before, "param_sum_after": after, "peak_gib": round(_cuda_peak_gib(), 2)}

    def big() -> dict:
        worker = state["worker"]
        batch = make_batch(model, args.big_batch, args.group, seed=1)
        worker.train_step(batch)  # warm-up at this shape
        times = []
        for _ in range(2):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            worker.train_step(batch)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return {"seqs": batch.num_seqs, "tokens": batch.num_tokens, "step_s": [round(x, 4) for x in times],
                "tokens_per_s": round(batch.num_tokens / (sum(times) / len(times))),
                "peak_gib": round(_cuda_peak_gib(), 2)}

    def timed(fn, n: int = 3) -> list[float]:
        fn()  # warm-up at this shape
        times = []
        for _ in range(n):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times.append(round(time.perf_counter() - t, 4))
        return times

    def variants() -> dict:
        batch, res = make_batch(model, args.batch, args.group), {}
        for micro in (16, 64):
            for packing in (True, False):
                cfg = LearnerConfig(gpus_per_rank=1 if cuda else 0, micro_batch_size=micro, lr=1e-5,
                                    packing=packing)
                w = LearnerWorker(cfg, model)
                res[f"micro{micro}_{'packed' if packing else 'padded'}"] = {
                    "train_s": timed(lambda: w.train_step(batch)),
                    "logprobs_s": timed(lambda: w.compute_logprobs(batch))}
                del w
                if cuda:
                    torch.cuda.empty_cache()
        return res

    def profile() -> dict:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        worker, batch = state["worker"], make_batch(model, args.batch, args.group)
        worker.train_step(batch)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        t = time.perf_counter()
        with torch_profile(activities=acts) as prof:
            worker.train_step(batch)
            if cuda:
                torch.cuda.synchronize()
        wall = time.perf_counter() - t
        events = prof.key_averages()
        cpu = sum(e.self_cpu_time_total for e in events) / 1e6
        # Kernel events only: a CPU op's self device time repeats the time of the kernels it launched.
        dev = sum(e.self_device_time_total for e in events
                  if e.device_type != torch.autograd.DeviceType.CPU) / 1e6
        launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernelEx"))
        top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]
        print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=50), flush=True)
        return {"step_s_profiled": round(wall, 3), "self_cpu_s": round(cpu, 3), "self_device_s": round(dev, 3),
                "kernel_launches": launches,
                "top_cpu": [[e.key, round(e.self_cpu_time_total / 1e6, 4), e.count] for e in top]}

    def engine() -> dict:
        rcfg = RolloutConfig(backend="hf", gpus_per_actor=1 if cuda else 0,
                             dtype=state["worker"].dtype_name, max_new_tokens=args.max_new_tokens)
        eng = HFEngine(rcfg, model)
        state["engine"] = eng
        prompts = arithmetic_prompt_ids(model, 8)
        eng.generate(prompts[:1], 2, seed=1)  # warm-up
        t = time.perf_counter()
        episodes = eng.generate(prompts, 8, seed=0)
        seconds = time.perf_counter() - t
        state["episodes"] = episodes
        new = sum(len(e.response_ids) for e in episodes)
        return {"dtype": rcfg.resolved_dtype(), "device": str(eng.device), "episodes": len(episodes),
                "new_tokens": new, "seconds": round(seconds, 3), "tokens_per_s": round(new / seconds)}

    def push() -> dict:
        worker, eng = state["worker"], state["engine"]
        plan = worker.weight_plan()
        t = time.perf_counter()
        poison(eng.model)
        flats = list(worker.weight_flats())
        numel = eng.receive_weights(ObjectStore.name, plan, flats)  # a fresh engine's receiver
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        mine = worker.named_parameters_cpu()
        theirs = dict(eng.model.named_parameters())
        mismatched = [n for n, p in mine.items() if not torch.equal(p, theirs[n].detach().cpu())]
        want = sum(weights.bucket_numel(b) for b in plan)
        return {"ok": not mismatched and numel == want, "buckets": len(plan), "numel": numel,
                "plan_numel": want, "seconds": round(seconds, 4), "mismatched": mismatched[:5],
                "compared": len(mine)}

    def agreement() -> dict:
        worker, eng = state["worker"], state["engine"]
        episodes = eng.generate(arithmetic_prompt_ids(model, 4), 4, seed=2)  # after the push
        for ep in episodes:
            ep.advantage = 0.0
        batch = pack_batch(episodes, pad_id=0, temperature=eng.cfg.temperature)
        mine = worker.compute_logprobs(batch)
        mask = batch.loss_mask > 0
        diff = (mine[mask] - batch.rollout_logprobs[mask]).abs()
        tol_mean, tol_max = AGREEMENT_TOL[worker.dtype_name]
        return {"ok": float(diff.mean()) <= tol_mean and float(diff.max()) <= tol_max,
                "tokens": int(mask.sum()), "mean_abs": float(diff.mean()), "max_abs": float(diff.max()),
                "tolerance": [tol_mean, tol_max],
                "mean_engine_logprob": float(batch.rollout_logprobs[mask].mean())}

    part("learner", results, learner)
    if "worker" in state and args.big_batch:
        part("learner_big_batch", results, big)
    if "worker" in state and args.profile:
        part("profile", results, profile)
    if "worker" in state:
        part("engine", results, engine)
    if "engine" in state:
        part("push", results, push)
        part("agreement", results, agreement)
    if "worker" in state:
        for backend in [b for b in args.backends.split(",") if b]:
            if backend == "nccl" and not cuda:
                continue
            part(f"collective_{backend}", results,
                 lambda b=backend: collective_push(state["worker"], model, state["worker"].dtype_name, b))
    if args.variants:
        part("variants", results, variants)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1))
    failed = [k for k, v in results.items() if k != "env" and not v.get("ok")]
    # With one GPU, NCCL refuses two ranks on one device: that failure, and only it, is expected.
    nccl = results.get("collective_nccl", {})
    expected = ({"collective_nccl"} if cuda and torch.cuda.device_count() < 2
                and "Duplicate GPU" in nccl.get("error", "") else set())
    print(f"failed: {failed or 'none'}" + (f" (expected on one GPU: {sorted(expected & set(failed))})"
                                           if expected & set(failed) else ""), flush=True)
    sys.exit(1 if set(failed) - expected else 0)


if __name__ == "__main__":
    main()
