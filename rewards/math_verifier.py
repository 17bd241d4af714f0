"""Math rewards: grade a response's final answer against the gold.

The work is split by job, and each file's docstring gives its decisions:
- rewards.math_clean: the response as it renders (invisible text removed, Unicode and TeX dress normalised);
- rewards.math_extract: the one extraction path (boxes, "####", "answer is", math-verify, last number,
  corrections, disowned numbers), which also says where the answer was read;
- rewards.math_guards: the one set of guards every extracted number answer passes (number literal,
  equation chains, undone operands, bounds and hedges);
- rewards.math_normalize / rewards.math_equivalence: number notations and equivalence (math-verify,
  both directions, percent as a unit);
- rewards.math_words: numbers and operators written in words.
This file only decides the score. It does not decide routing or timeouts per sample; `rewards.verifier`
and `rewards.pool` do.
"""

from __future__ import annotations

import math

from .config import MathRewardConfig
from .math_clean import defines_macros
from .math_equivalence import MAX_ANSWER_CHARS, answers_equivalent
from .math_extract import MAX_BOXES, extract, extract_answer_with_method, final_box
from .math_guards import chain_answer, context_problem, decimal_comma, number_literal, spaced_numbers
from .types import Sample, Score

__all__ = ["MAX_ANSWER_CHARS", "MAX_BOXES", "MAX_RESPONSE_CHARS", "answers_equivalent", "extract_answer", "extract_answer_with_method",
           "score_math"]

MAX_RESPONSE_CHARS = 1 << 21
"""A response over 2 MiB is scored 0 ("response_too_long") unread: it bounds the work per response (every
regex of the math_* modules is linear, so this is the whole bound), and no real answer needs it."""
_MISSING_GOLD = {"", "none", "null", "nan"}
"""What a missing value looks like after `str()` (None, SQL/JSON null, pandas NaN)."""


def extract_answer(text: str | None) -> str | None:
    """The final answer of a response (rewards.math_extract), or None when it has none to grade."""
    return extract_answer_with_method(text)[0]


def _gold_answer(gold: object, max_chars: int, timeout_s: int) -> tuple[str | None, str | None]:
    """(gold text, problem). Datasets store the gold as "18", "\\boxed{18}" or a GSM8K solution ending
    "#### 18". A missing gold (None, NaN, empty, or the "None"/"nan" that str() makes of one) is a data
    error. It is never turned into the text "None", which a response could then match."""
    if gold is None or (isinstance(gold, float) and math.isnan(gold)):
        return None, "missing gold answer"
    text = gold if isinstance(gold, str) else str(gold)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    boxed, problem, _ = final_box(text, max_chars, timeout_s)
    if problem:
        return None, f"bad gold box: {problem}"
    text = (boxed if boxed is not None else text).strip()
    if text.lower() in _MISSING_GOLD:
        return None, "missing gold answer"
    return text, None


def _clamp(reward: float) -> float:
    """Rewards live in [0, 1] whatever the format terms: pass rates and advantage scales assume it.

    So a boxed bonus only lifts a wrong boxed answer, and an unboxed penalty only lowers a right unboxed one.
    """
    return min(1.0, max(0.0, reward))


def score_math(sample: Sample, cfg: MathRewardConfig) -> Score:
    """1.0 when the extracted answer equals the gold, else 0.0, plus the configured format term, clamped.

    A data error (no gold) scores a flat 0 without the format term, so every sample of that prompt gets
    the same reward and no gradient. A response that is no str, or is over MAX_RESPONSE_CHARS, scores a flat
    0 with a reason ("bad_response: int, not str", "response_too_long: N chars"), and so does one that
    defines TeX macros ("hidden: defines macros", rewards.math_clean). A response without a gradable answer scores 0 with the reason. For
    a gold that is a number (`cfg.numbers_as_numbers`), the answer, however it was read, must pass the
    guards of rewards.math_guards: an equation chain answers with its agreeing number sides, else
    "contradiction"; an answer that is no number, or a number that is an operand of undone arithmetic,
    is "unsimplified"; a number only bounded, approximate, or offered beside another (in prose or side by side in
    one box: "\\boxed{20 $ 21}") is "hedge".
    """
    gold, problem = _gold_answer(sample.answer, cfg.max_answer_chars, cfg.parse_timeout_s)
    if gold is None:
        return Score(sample.uid, 0.0, False, f"data_error: {problem}", None)
    if not isinstance(sample.response, str):
        return Score(sample.uid, 0.0, False, f"bad_response: {type(sample.response).__name__}, not str", None)
    if len(sample.response) > MAX_RESPONSE_CHARS:
        return Score(sample.uid, 0.0, False, f"response_too_long: {len(sample.response)} chars", None)
    if defines_macros(sample.response):
        return Score(sample.uid, 0.0, False, "hidden: defines macros", None)
    found = extract(sample.response, cfg.max_answer_chars, cfg.parse_timeout_s)
    answer, how = found.answer, found.how
    fmt = cfg.boxed_bonus if how == "boxed" else -cfg.unboxed_penalty
    if answer is None:
        reason = how if how.startswith("bad_box") or how == "hedge" else "no_answer"
        return Score(sample.uid, _clamp(fmt), False, reason, None)
    if cfg.numbers_as_numbers and number_literal(gold):
        answer, problem = chain_answer(answer, cfg.parse_timeout_s, cfg.max_answer_chars)
        number = decimal_comma(answer)
        problem = problem or ("hedge" if spaced_numbers(number) else None if number_literal(number) else "unsimplified")
        problem = problem or context_problem(found.text, found.span, answer, str(sample.prompt))
        if problem:
            return Score(sample.uid, _clamp(fmt), False, problem, answer)
        answer = number
    correct = answers_equivalent(gold, answer, cfg.parse_timeout_s, cfg.max_answer_chars)
    return Score(sample.uid, _clamp((1.0 if correct else 0.0) + fmt), correct,
                 "ok" if correct else "wrong_answer", answer)
