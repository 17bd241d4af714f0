"""Shared bits of the benchmarks: model choice and prompts (tokenized with the chat template)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench_model(arg: str | None) -> str:
    from orchestrator.models import resolve_model

    return resolve_model(arg or os.environ.get("FORKRL_BENCH_MODEL", "smollm2-135m"))


def arithmetic_prompt_ids(model_path: str, n: int) -> list[list[int]]:
    from transformers import AutoTokenizer

    from orchestrator.data import ArithmeticData, generate_arithmetic

    tok = AutoTokenizer.from_pretrained(model_path)
    rows = generate_arithmetic(ArithmeticData(), "train", n)
    out = []
    for r in rows:
        ids = tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out
