"""Math answers: pull the final answer out of a response and decide whether two answers mean the same.

`extract_answer` and `answers_equivalent` are pure module-level functions so other code (semantic-entropy
clustering) can use them without a config. Equivalence is math-verify's (sympy); everything that reaches
it is length-capped first, because sympy can hang on huge or pathological input, and math-verify's own
SIGALRM budget is used whenever we run on the main thread (signals work nowhere else).
"""

from __future__ import annotations

import functools
import re
import threading

from .config import MathRewardConfig
from .types import Sample, Score

MAX_ANSWER_CHARS = 1000
_TAIL_CHARS = 20_000  # the final answer lives near the end; scanning 1 MB for "####" or numbers is waste
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
_GSM_RE = re.compile(r"####\s*([^\n]+)")
_NUM_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")


def _boxed_contents(text: str, max_chars: int) -> str | None:
    """The contents of the last well-formed \\boxed{...} (or \\boxed 5), braces nested; None if none."""
    # at most the last 20 candidates: 3,000 unbalanced \boxed{ in a row must not cost seconds
    for m in list(_BOX_RE.finditer(text))[::-1][:20]:
        i = m.end()
        if i < len(text) and text[i] != "{":  # "\boxed 5": one token up to whitespace or '$'
            tok = re.match(r"[^\s$]+", text[i:i + max_chars])
            if tok:
                return tok.group(0)
            continue
        depth, j = 0, i
        end = min(len(text), i + max_chars + 2)
        while j < end:
            c = text[j]
            if c == "\\" and j + 1 < end:  # \{ and \} are literal braces (sets), not grouping
                j += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1:j].strip()
            j += 1
        # unbalanced or too long: try an earlier \boxed
    return None


def extract_answer_with_method(text: str | None, max_chars: int = MAX_ANSWER_CHARS) -> tuple[str | None, str]:
    """(answer, how): how is "boxed", "gsm8k", "last_number" or "none"."""
    if not text:
        return None, "none"
    tail = text[-_TAIL_CHARS:]
    boxed = _boxed_contents(tail, max_chars)
    if boxed:
        return boxed[:max_chars], "boxed"
    gsm = _GSM_RE.findall(tail)
    if gsm and gsm[-1].strip():
        return gsm[-1].strip().rstrip(".")[:max_chars], "gsm8k"
    nums = _NUM_RE.findall(tail)
    if nums:
        return nums[-1].replace(" ", "")[:max_chars], "last_number"
    return None, "none"


def extract_answer(text: str | None) -> str | None:
    """The final answer of a response: last \\boxed{} (nested braces), else '#### x', else the last number."""
    return extract_answer_with_method(text)[0]


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@functools.lru_cache(maxsize=4096)
def _parse(ans: str, timeout_s: int) -> tuple:
    from math_verify import parse  # heavy (sympy, antlr); imported on first use

    body = ans.strip()
    if not (body.startswith("$") and body.endswith("$")):
        body = f"${body}$"  # a bare "1/2" or "\{1,2\}" parses as LaTeX only inside math mode
    parsed = parse(body, parsing_timeout=timeout_s if _on_main_thread() else None)
    return tuple(parsed) if parsed else tuple(parse(ans, parsing_timeout=timeout_s if _on_main_thread() else None))


def _norm(s: str) -> str:
    return re.sub(r"\s+|\$", "", s)


def answers_equivalent(a: str | None, b: str | None, timeout_s: int = 3, max_chars: int = MAX_ANSWER_CHARS) -> bool:
    """True when two final answers denote the same value (1/2 = 0.5 = \\frac{1}{2}; sets, intervals, units).

    Symmetric (checked both ways, since math-verify treats its first argument as the gold answer); never
    raises; over-long answers are compared as plain strings only.
    """
    if not a or not b:
        return False
    a, b = str(a), str(b)
    if _norm(a) == _norm(b):
        return _norm(a) != ""
    if len(a) > max_chars or len(b) > max_chars:
        return False
    try:
        from math_verify import verify

        pa, pb = _parse(a, timeout_s), _parse(b, timeout_s)
        if not pa or not pb:
            return False
        t = timeout_s if _on_main_thread() else None
        return bool(verify(list(pa), list(pb), timeout_seconds=t) or verify(list(pb), list(pa), timeout_seconds=t))
    except Exception:  # math-verify is best effort; a parse failure means "not shown equal"
        return False


def score_math(sample: Sample, cfg: MathRewardConfig) -> Score:
    """1.0 when the extracted answer equals the ground truth, else 0.0; plus the configured format reward."""
    answer, how = extract_answer_with_method(sample.response, cfg.max_answer_chars)
    fmt = cfg.boxed_bonus if how == "boxed" else -cfg.unboxed_penalty
    if answer is None:
        return Score(sample.uid, 0.0 + fmt, False, "no_answer", None)
    gold = sample.answer
    gold_text = gold if isinstance(gold, str) else str(gold)
    gold_box = _boxed_contents(gold_text, cfg.max_answer_chars)  # datasets often store "\boxed{..}" as the answer
    correct = answers_equivalent(gold_box or gold_text, answer, cfg.parse_timeout_s, cfg.max_answer_chars)
    return Score(sample.uid, (1.0 if correct else 0.0) + fmt, correct, "ok" if correct else "wrong_answer", answer)
