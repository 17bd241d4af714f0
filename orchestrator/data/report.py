"""What loading kept, skipped and ended up holding: the lines the trainer logs for every source."""

from __future__ import annotations

import dataclasses
from collections import Counter

from forkrl.orchestrator.data.rows import PromptRow, normalised_prompt

MAX_EXAMPLES = 5


@dataclasses.dataclass
class SplitStats:
    """What one split ended up holding, so a log line shows whether eval is really held out and how
    many independent questions it asks.

    ``problems`` counts distinct problems: for the generator up to operand order ("3 + 5" and
    "5 + 3" are one), for files the distinct normalised prompts (so it equals ``prompts``).
    ``in_train`` (eval only) counts eval rows whose problem is also a training problem; it is
    computed from the final rows rather than assumed, so a regression shows up in the log.
    ``space`` (generator only) is how many distinct problems the split can draw from.
    """

    name: str
    rows: int
    problems: int
    prompts: int
    in_train: int | None = None
    space: int | None = None

    def __str__(self) -> str:
        s = f"{self.name} split: {self.rows} rows, {self.problems} distinct problems"
        if self.space is not None:
            s += f" (of {self.space} possible)"
        s += f", {self.prompts} distinct prompts"
        if self.in_train is not None:
            s += f", {self.in_train} also in train"
        return s


@dataclasses.dataclass
class LoadReport:
    """What loading one source kept and skipped; ``summary()`` is the line to log."""

    source: str
    num_ok: int = 0
    num_skipped: int = 0
    reasons: Counter = dataclasses.field(default_factory=Counter)
    examples: list[str] = dataclasses.field(default_factory=list)
    splits: list[SplitStats] = dataclasses.field(default_factory=list)

    def skip(self, row: int, reason: str, detail: str = "") -> None:
        self.num_skipped += 1
        self.reasons[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"row {row}: {reason}" + (f" ({detail})" if detail else ""))

    def summary(self) -> str:
        s = f"{self.source}: {self.num_ok} rows ok, {self.num_skipped} skipped"
        if self.num_skipped:
            s += " (" + ", ".join(f"{r}: {n}" for r, n in self.reasons.most_common()) + ")"
        s += "".join(f"; {split}" for split in self.splits)
        if self.num_skipped:
            s += "; e.g. " + "; ".join(self.examples)
        return s


@dataclasses.dataclass
class LoadedData:
    train: list[PromptRow]
    eval: list[PromptRow]
    reports: list[LoadReport]

    def overlap(self) -> int:
        """Eval rows whose normalised prompt is also a training prompt (0 when eval is held out)."""
        train = {normalised_prompt(r.messages) for r in self.train}
        return sum(normalised_prompt(r.messages) in train for r in self.eval)
