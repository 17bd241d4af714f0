"""The arithmetic generator: problems, their held-out split, and the count of the problem space.

A *prompt* is an expression as written ("5 + 3"); a *problem* is that expression up to the order of
the terms of a sum and the factors of a product ("5 + 3" and "3 + 5" are one problem, see
``problem_key``). The split, the eval draw and the data report all work on problems, so the eval
split holds distinct problems and its size is the number of independent questions it asks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from forkrl.orchestrator.data.rows import DataError, PromptRow, messages

if TYPE_CHECKING:
    from forkrl.orchestrator.data.config import ArithmeticData

ENUMERATION_LIMIT = 50_000
"""Problem spaces with at most this many operand/operator combinations are counted exactly, so a
too-large num_eval fails when the config is validated (~0.3 s at 30k). Larger spaces are not counted:
there a shortfall can only show as MAX_TRIES failed draws when the data is generated."""
MAX_TRIES = 100_000
"""Draws per row before giving up (negative answers, the other split's problems and, for eval,
problems already drawn are redrawn)."""


@dataclasses.dataclass(frozen=True)
class ProblemSpace:
    """How many distinct problems (up to operand order) and prompts (as written) the generator can
    produce, and how many of each are held out."""

    total: int
    held_out: int
    prompts: int
    held_out_prompts: int

    @property
    def train(self) -> int:
        return self.total - self.held_out

    @property
    def train_prompts(self) -> int:
        return self.prompts - self.held_out_prompts


def lowest(digits: int) -> int:
    """The smallest operand of this many digits (0 for one digit)."""
    return 0 if digits == 1 else 10 ** (digits - 1)


def _highest(digits: int, cfg: ArithmeticData) -> int:
    return 10**digits - 1 if cfg.max_value is None else min(10**digits - 1, cfg.max_value)


def _operand(rng: random.Random, cfg: ArithmeticData) -> int:
    digits = rng.randint(cfg.min_digits, cfg.max_digits)
    return rng.randint(lowest(digits), _highest(digits, cfg))


def _terms(operands: Sequence[int], ops: Sequence[str]) -> list[tuple[str, list[int]]]:
    """The expression as signed products, * binding tighter: 2 * 3 - 4 -> [(+, [2, 3]), (-, [4])]."""
    terms = [("+", [operands[0]])]
    for op, x in zip(ops, operands[1:]):
        if op == "*":
            terms[-1][1].append(x)
        else:
            terms.append((op, [x]))
    return terms


def evaluate(operands: Sequence[int], ops: Sequence[str]) -> int:
    """Integer value of operands joined by ops, with * binding tighter than + and -."""
    return sum(math.prod(f) if sign == "+" else -math.prod(f) for sign, f in _terms(operands, ops))


def problem_key(operands: Sequence[int], ops: Sequence[str]) -> str:
    """The problem up to commutativity: terms and factors sorted, so "5 + 3" is "3 + 5" and
    "7 - 4 + 2 * 3" is "3 * 2 + 7 - 4". The hold-out and the eval draw's distinctness are decided
    on this key, so a held-out problem is neither trained on nor evaluated twice with its operands
    in another order."""
    return " ".join(sorted(sign + "*".join(map(str, sorted(f))) for sign, f in _terms(operands, ops)))


def _is_held_out(key: str, cfg: ArithmeticData) -> bool:
    """Whether a problem belongs to eval: a stable hash (not Python's salted hash()) of the split
    seed and problem, compared with eval_fraction, so the same problems are held out in every
    process and run."""
    digest = hashlib.blake2b(f"{cfg.split_seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < cfg.eval_fraction * 2**64


def _operand_counts(cfg: ArithmeticData) -> range:
    """The operand counts a problem can have: num_operands, or num_operands..max_operands."""
    return range(cfg.num_operands, (cfg.max_operands or cfg.num_operands) + 1)


def problem_space(cfg: ArithmeticData) -> ProblemSpace | None:
    """Count the distinct problems and prompts (valid operand/operator combinations), all and held
    out, by enumeration; None when there are more than ENUMERATION_LIMIT combinations."""
    values = [v for d in range(cfg.min_digits, cfg.max_digits + 1)
              for v in range(lowest(d), _highest(d, cfg) + 1)]
    ops = sorted(set(cfg.operations))
    counts = _operand_counts(cfg)
    if sum(len(values) ** k * len(ops) ** (k - 1) for k in counts) > ENUMERATION_LIMIT:
        return None
    held: dict[str, bool] = {}
    prompts = held_prompts = 0
    for k in counts:
        for operands in itertools.product(values, repeat=k):
            for op_seq in itertools.product(ops, repeat=k - 1):
                if cfg.allow_negative or evaluate(operands, op_seq) >= 0:
                    key = problem_key(operands, op_seq)
                    if key not in held:
                        held[key] = _is_held_out(key, cfg)
                    prompts += 1
                    held_prompts += held[key]
    return ProblemSpace(total=len(held), held_out=sum(held.values()), prompts=prompts,
                        held_out_prompts=held_prompts)


def split_problem(cfg: ArithmeticData, space: ProblemSpace | None, num_eval: int) -> str | None:
    """Why the split cannot serve ``num_eval`` distinct eval problems and any training, or None."""
    if space is None:
        return None
    if space.train == 0:
        return (f"eval_fraction={cfg.eval_fraction} holds out all {space.total} problems of this "
                f"task (split_seed={cfg.split_seed}); none is left to train on")
    if num_eval > space.held_out:
        return (f"num_eval={num_eval} asks for more distinct eval problems than the "
                f"{space.held_out} that eval_fraction={cfg.eval_fraction} holds out of this task's "
                f"{space.total} (up to operand order; split_seed={cfg.split_seed}); lower num_eval "
                "or raise eval_fraction")
    return None


def generate_arithmetic(cfg: ArithmeticData, split: str, n: int) -> list[PromptRow]:
    """``n`` problems for ``split``; deterministic in (cfg, split, n).

    "train" draws (with repeats) only problems outside the held-out part, "eval" draws distinct
    problems (up to operand order) only inside it: a draw from the other side, an eval problem
    already drawn in any operand order, or a negative answer (unless allowed) is redrawn. Each row's
    ``meta`` holds its ``expr`` and its ``problem`` (``problem_key``).
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    want_held_out = split == "eval"
    problem = split_problem(cfg, problem_space(cfg), n if want_held_out else 0)
    if problem:
        raise DataError(problem)
    rng = random.Random(f"arithmetic:{cfg.seed}:{split}")
    counts = _operand_counts(cfg)
    rows: list[PromptRow] = []
    drawn: set[str] = set()
    for i in range(n):
        for _ in range(MAX_TRIES):
            # the count is drawn only when it varies, so tasks without max_operands keep their draws
            k = counts[0] if len(counts) == 1 else rng.randint(counts[0], counts[-1])
            operands = [_operand(rng, cfg) for _ in range(k)]
            ops = [rng.choice(cfg.operations) for _ in range(k - 1)]
            value = evaluate(operands, ops)
            key = problem_key(operands, ops)
            if ((cfg.allow_negative or value >= 0) and _is_held_out(key, cfg) == want_held_out
                    and not (want_held_out and key in drawn)):
                break
        else:
            raise DataError(f"no new {split} problem in {MAX_TRIES} draws after {i} rows: the "
                            f"{split} part of the problem space is (nearly) used up or rarely hit; "
                            f"check num_{split}, eval_fraction and allow_negative")
        drawn.add(key)
        expr = " ".join([str(operands[0])] + [f"{op} {x}" for op, x in zip(ops, operands[1:])])
        msgs = messages(cfg.question_template.replace("{expr}", expr), cfg)
        assert isinstance(msgs, list)
        rows.append(PromptRow(uid=f"arith-{split}-{i}", messages=msgs, answer=str(value),
                              task=cfg.task, meta={"expr": expr, "problem": key}))
    return rows
