"""Offline task data shipped with the package (HumanEval, MIT licence: see data/HumanEval.LICENSE)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

_DATA = Path(__file__).with_name("data")


def load_humaneval() -> list[dict]:
    """HumanEval's 164 problems: task_id, prompt, entry_point, canonical_solution, test."""
    with gzip.open(_DATA / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def humaneval_answer(problem: dict) -> dict:
    """The `Sample.answer` for a HumanEval problem (what the code verifier needs, nothing more)."""
    return {k: problem[k] for k in ("prompt", "test", "entry_point")}
