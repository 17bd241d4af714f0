"""What the verifier scored, kept with the run: `<run dir>/samples.jsonl` and the `verdict/*` metrics.

RL optimises whatever the verifier lets through, and a policy that games it shows first in its text:
the comparison's GRPO run learned to answer "19 + 17" for 36 while reward, accuracy and entropy all
looked like learning, and only reading its outputs showed it. So every run keeps, per training step,
the first sample of the first `logging.sample_prompts` prompts, and at every evaluation the greedy
answers to as many held-out prompts, each with its gold, the extracted answer and the verdict; and it
counts every verdict per step as a fraction (`verdict/<reason>`, `eval/verdict/<reason>`): a rising
"unsimplified" or "no_answer" share is a policy probing the verifier's edges.

Lines are appended, so a resumed run continues the file; a step run again after a resume appears
twice, the later lines being the ones trained on (as in metrics.jsonl). The selection is by position,
never random: logging draws no random numbers and cannot change a run.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from forkrl.common.episode import Episode, Group

ALWAYS = ("ok", "wrong_answer", "unsimplified", "no_answer", "hedge", "bad_box", "timeout", "crash")
"""Verdicts reported every step, 0 when absent: a gauge or curve must fall to 0, not freeze at its last
value. Others ("tests_failed", "unknown_task", ...) are reported in the steps that have them."""
MAX_TEXT = 2000  # characters of a response or gold kept per line


def verdict_name(reason: str) -> str:
    """The metric name of a verifier reason: its head before any ':' detail, as an identifier
    ("crash: ZeroDivisionError" -> "crash", "bad_box: unbalanced" -> "bad_box")."""
    head = reason.split(":", 1)[0].strip().lower()
    return re.sub(r"[^a-z0-9_]+", "_", head).strip("_") or "none"


def verdict_fractions(episodes: Sequence[Episode], prefix: str = "verdict/") -> dict[str, float]:
    """Fraction of the episodes with each verdict (the ALWAYS ones included at 0)."""
    if not episodes:
        return {}
    counts = Counter(verdict_name(ep.verdict) for ep in episodes)
    names = sorted(set(ALWAYS) | set(counts))
    return {f"{prefix}{name}": counts.get(name, 0) / len(episodes) for name in names}


def _clip(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"... [{len(text) - MAX_TEXT} more chars]"


class SampleLog:
    """Appends scored samples to one JSON-lines file; `prompts` = 0 writes nothing."""

    def __init__(self, path: Path, prompts: int):
        self.path, self.prompts = Path(path), prompts

    def write(self, step: int, kind: str, rows: Iterable, groups: Sequence[Group]) -> int:
        """One line for the first sample of each of the first `prompts` (row, group) pairs; returns
        the number of lines written. `kind` says where the samples come from ("train", "eval")."""
        lines = []
        for row, group in list(zip(rows, groups))[: self.prompts]:
            if not group:
                continue
            ep = group[0]
            lines.append(json.dumps({
                "step": step, "kind": kind, "prompt_id": ep.prompt_id, "sample": ep.sample_index,
                "weight_version": ep.weight_version, "prompt": _clip(row.messages[-1]["content"]),
                "gold": _clip(row.answer), "response": _clip(ep.text), "finish_reason": ep.finish_reason,
                "extracted": ep.extracted, "verdict": ep.verdict, "reward": ep.reward, "correct": ep.correct}))
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write("\n".join(lines) + "\n")
        return len(lines)


def read_samples(path: Path) -> list[dict]:
    """Every line of a samples.jsonl."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]
