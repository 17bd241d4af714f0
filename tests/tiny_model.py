"""A tiny random-weight Llama with a real byte-level BPE tokenizer, built from a config.

Tests need a model that vLLM, transformers and DeepSpeed all load exactly like a real checkpoint
(config.json + safetensors + tokenizer files + chat template) but that runs in milliseconds.
"""
from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "What is 3 + 4? The answer is 7.",
    "Compute 12 - 5 = 7, so the result is \\boxed{7}.",
    "user assistant system Please reason step by step and answer.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 plus minus times equals",
] * 20


def build_tiny_model(path: Path, vocab_size: int = 512, layers: int = 2, hidden: int = 128,
                     seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # head_dim is fixed at 64: vLLM's CPU attention kernels support only a few head sizes.
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=1,
        max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, torch_dtype="float32",
    )
    model = LlamaForCausalLM(cfg)
    # Larger-than-default init so sampled text is diverse and log-probs are far from uniform.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    model.save_pretrained(path, safe_serialization=True)
    return path


def episode(prompt_ids, response_ids, advantage=0.0, logprobs=None, version=0):
    """An Episode built by hand (a probe sequence for log-prob checks, a fake rollout output)."""
    from forkrl.common.episode import Episode

    return Episode(prompt_index=0, sample_index=0, prompt_ids=list(prompt_ids), response_ids=list(response_ids),
                   logprobs=list(logprobs) if logprobs is not None else [0.0] * len(response_ids),
                   finish_reason="stop", text="", weight_version=version, prompt_id="probe", advantage=advantage)


def tiny_job(model: Path, **sections: dict) -> dict:
    """A recipe for a two-step job on the tiny model (no evaluation, no checkpoints, no dashboard);
    `sections` replace whole top-level sections."""
    recipe = {
        "model": {"path": str(model)},
        "data": {"type": "arithmetic", "num_train": 16, "num_eval": 4},
        "rollout": {"samples_per_prompt": 4, "max_new_tokens": 8, "max_model_len": 256, "kv_cache_gb": 0.25},
        "reward": {"num_workers": 1, "type": "function", "function": "e2e_reward:digit_share"},
        "learner": {"micro_batch_size": 16},
        "trainer": {"steps": 2, "prompts_per_step": 2},
        "eval": {"every_steps": 0},
        "checkpoint": {"every_steps": 0},
        "cluster": {"dashboard": False},
        "logging": {"progress": False},
    }
    return {**recipe, **sections}
