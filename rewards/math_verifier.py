"""Math answers: pull the final answer out of a response and decide whether two answers mean the same.

RL optimises against this file: whatever number the extractor grades, the policy learns to steer. So
extraction never guesses. When a response is ambiguous it has no answer, and the reason says why.
The order, first match wins:

1. **Boxes.** If the response (with ``` code fences removed, since code can print anything) holds any
   `\\boxed`/`\\fbox`, only box contents can be graded. Every box must be well formed and all boxes must
   agree. Otherwise there is no answer: "bad_box: unbalanced", "bad_box: too long" (over `max_chars`),
   "bad_box: empty" (only empty boxes; a stray `\\boxed{}` beside a real one is skipped), "bad_box: too
   many" (over MAX_BOXES) or "bad_box: several answers". We never fall back to a number. The last
   number may sit inside or after a broken box, so a policy could choose it by padding. A good box followed by a broken one scores 0 as well: otherwise a model could add a
   broken box after a guess. Several different boxed answers ("\\boxed{3} or \\boxed{4}") score 0. A
   careful grader would not pick one for the model, and semantic-entropy clustering needs the one answer
   the response commits to. Boxes that repeat the same answer are fine. A multi-valued answer belongs in
   one box: `\\boxed{2, 3}`.
2. **"#### x"**, GSM8K's final-answer line (the last one).
3. **"answer is x" / "answer: x"**: the last such anchor, read to the end of its sentence. math-verify's
   own anchor looks up to 100 characters past "answer" for "= y", so "The answer is 5. Check: 5 + 1 = 6"
   would grade 6 there. Two different answers joined by "or" in prose are a hedge ("hedge"); in math
   ("5 \\text{ or } 6", "$5$ or $6$") they read as the set {5, 6}, as they do in a box.
4. **math-verify's own extraction** (LaTeX environments, expressions, numbers) over the last
   `_PARSE_CHARS` characters.
5. **The last number.**

Steps 2 to 5 run only when the response holds no box at all.

Equivalence is math-verify's (sympy), checked in both directions. It is run after one normalisation
that is applied to both sides, so the relation stays symmetric:
unicode minus; thousands separators (`1\\,000`, `1{,}000`, `1 000`, `1,000`, thin spaces); scientific
notation (`1.5e3`, `1.5 \\times 10^3` become 1500); repeating decimals (`0.\\overline{3}`, `0.(3)` become
\\frac{1}{3}); `\\text{5}` becomes 5; trailing unit words ("18 dollars" becomes 18). **Percent is a unit
and is dropped**: "50\\%" = 50, and "50\\%" != 0.5. On its own, math-verify accepts 50% = 50 and
50% = 0.5 but not 50 = 0.5, which is not transitive, and clustering assumes transitivity. MATH and GSM8K
store "what percent" answers as the bare number.

Everything that reaches sympy is length-capped first, because sympy can hang on huge or pathological
input. math-verify's own SIGALRM budget is used whenever we run on the main thread (signals work nowhere
else; off it, the pool's per-sample timeout kills a stuck worker). This file does not decide routing or
timeouts per sample; `rewards.verifier` and `rewards.pool` do.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import threading
import time
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from .config import MathRewardConfig
from .types import Sample, Score

MAX_ANSWER_CHARS = 1000
MAX_BOXES = 20
"""More boxes than this is spam, not an answer; it also bounds the work per response."""
_TAIL_CHARS = 20_000  # the final answer lives near the end; scanning 1 MB for "####" or anchors is waste
_PARSE_CHARS = 2_000  # math-verify's regexes run over this much of the tail only
_SEGMENT_CHARS = 300  # how far past "answer is" the stated answer may run

# --- extraction patterns -------------------------------------------------------------------------------
_FENCE_RE = re.compile(r"```.*?```", re.S)
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
_BRACE_RE = re.compile(r"\\.|[{}]", re.S)  # \{ and \} are literal braces (sets), not grouping
_GSM_RE = re.compile(r"####[ \t]*([^\n]*)")
# "answer is", "answer to part (a) is", "Answer:", "answer ="
_ANSWER_RE = re.compile(r"\banswer\b(?:[^.\n:=]{0,40}?\bis\b|\s*[:=])", re.I)
# a stated answer ends at a newline, a sentence stop, or ", <word>" (", since ..."), but not at ", or"
_SENTENCE_END_RE = re.compile(r"\n|[.!?;](?=\s|$)|,\s+(?!or\b)(?=[A-Za-z]{2})")
_OR_RE = re.compile(r",?\s*\bor\b\s*", re.I)
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")  # a word that is not a \command
_TEXT_BLOCK_RE = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{[^{}]*\}")
_NUM_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")

# --- normalisation patterns ----------------------------------------------------------------------------
_UNICODE = str.maketrans({"\u2212": "-", "\ufe63": "-", "\uff0d": "-", "\u2013": "-", "\uff0b": "+",
                          "\u00d7": r"\times ", "\u22c5": r"\cdot ", "\u00b7": r"\cdot "})
_THIN_SEP = r"(?:\\,|\\ |\\;|\\:|\\!|~|\{,\}|\\thinspace\s*|[\u2009\u202f\u00a0])"
_THIN_THOUSANDS_RE = re.compile(rf"(?<![\d.])(\d{{1,3}})((?:{_THIN_SEP}\d{{3}})+)(?!\d)")
_SPACE_THOUSANDS_RE = re.compile(r"(?<![\d.])(\d{1,3})((?: \d{3})+)(?![\d.])")
_COMMA_NUMBER_RE = re.compile(r"\s*(\\?\$)?\s*(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?)\s*")
_SCI_E_RE = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([+-]?\d{1,3})(?![\w.])")
_SCI_TIMES_RE = re.compile(
    r"(?<![\w.^_{\\])(\d+(?:\.\d+)?)\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*(?:\{\s*([+-]?\d{1,3})\s*\}|([+-]?\d))")
_REPEAT_BAR_RE = re.compile(r"(?<![\d.])(-?)(\d{0,30})\.(\d{0,30})\s*\\(?:overline|bar|dot)\s*\{(\d{1,30})\}")
_REPEAT_PAREN_RE = re.compile(r"(?<![\d.])(-?)(\d{1,30})\.(\d{0,30})\((\d{1,30})\)")
_TEXT_NUMBER_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{\s*(-?\d[\d.,]*)\s*\}")
_PERCENT_RE = re.compile(r"(?<=\d)\s*(?:\\?%|\\text\s*\{\s*(?:\\?%|percent)\s*\}|percent\b)")
_TRAILING_WORDS_RE = re.compile(r"\s*(\\?\$?\s*-?\d[\d.,]*(?:/\d+)?)\s*((?:[A-Za-z]{2,}\.?\s*)+)")
_MATH_WORDS = {"or", "and", "pi", "sqrt", "to", "plus", "minus", "times", "over", "by", "squared", "cubed",
               "root", "dozen", "hundred", "thousand", "million", "billion", "trillion", "infinity", "inf"}
"""Words after a number that change its value: "18 dollars" is 18, "2 million" and "5 or 6" are not."""
_MISSING_GOLD = {"", "none", "null", "nan"}
"""What a missing value looks like after `str()` (None, SQL/JSON null, pandas NaN)."""


# --- extraction ----------------------------------------------------------------------------------------

def _read_box(text: str, i: int, max_chars: int) -> tuple[str | None, int, str | None]:
    """(content, end, problem) for a box whose argument starts at text[i]. Scans at most max_chars."""
    if i >= len(text):
        return None, i, "empty"
    if text[i] != "{":  # "\boxed 5": TeX takes one token; like other graders we take one word
        tok = re.match(r"[^\s$]+", text[i:i + max_chars + 1])
        if not tok:
            return None, i, "empty"
        if len(tok.group(0)) > max_chars:
            return None, i, "too long"
        return tok.group(0), i + tok.end(), None
    window = text[i:i + max_chars + 2]
    depth = 0
    for m in _BRACE_RE.finditer(window):
        if m.group() == "{":
            depth += 1
        elif m.group() == "}":
            depth -= 1
            if depth == 0:
                content = window[1:m.start()].strip()
                return (content, i + m.end(), None) if content else (None, i + m.end(), "empty")
    return None, len(text), "unbalanced" if i + len(window) >= len(text) else "too long"


def _final_box(text: str, max_chars: int, timeout_s: int = 3) -> tuple[str | None, str | None]:
    """(answer, problem) from the boxes in text: (None, None) when there is no box at all.

    Empty boxes ("put it in \\boxed{}") hold no answer and are skipped; a box nested inside another
    belongs to it. Any other malformed box, or boxes that disagree, make the whole response unanswered.
    """
    opens = list(itertools.islice(_BOX_RE.finditer(text), MAX_BOXES + 1))
    if not opens:
        return None, None
    if len(opens) > MAX_BOXES:
        return None, "too many"
    answers: list[str] = []
    covered_to = -1
    for m in opens:
        if m.start() < covered_to:
            continue
        content, end, problem = _read_box(text, m.end(), max_chars)
        if problem == "empty":
            continue
        if problem:
            return None, problem
        answers.append(content)
        covered_to = end
    if not answers:
        return None, "empty"
    final = answers[-1]
    # stops at the first disagreement, so hostile boxes cost at most about one sympy budget
    if any(not answers_equivalent(a, final, timeout_s, max_chars) for a in answers[:-1]):
        return None, "several answers"
    return final, None


def _alarm(timeout_s: int) -> int | None:
    """math-verify's SIGALRM budget where signals work (the main thread), else none."""
    return timeout_s if threading.current_thread() is threading.main_thread() else None


def _mv_extract(text: str, timeout_s: int = 3) -> str | None:
    """The answer math-verify's own extraction finds in prose, as the text it matched (or None)."""
    from math_verify import parse  # heavy (sympy, antlr); imported on first use

    try:
        got = parse(text, parsing_timeout=_alarm(timeout_s))
    except Exception:  # best effort: a parser failure means "nothing found"
        return None
    found = next((p for p in got if isinstance(p, str) and p.strip()), None)
    return found.strip() if found else None


def _is_math(segment: str) -> bool:
    """True when a stated answer is math (no prose words), so it can be graded as a whole, like a box."""
    bare = _TEXT_BLOCK_RE.sub(" ", _normalize_answer(segment))
    return all(w.lower() in ("or", "and") for w in _WORD_RE.findall(bare))


def _anchored_answer(tail: str, max_chars: int, timeout_s: int) -> tuple[str | None, str]:
    """The answer stated after the last "answer is" / "answer:", read to the end of its sentence."""
    last = None
    for last in _ANSWER_RE.finditer(tail):
        pass
    if last is None:
        return None, "none"
    seg = tail[last.end():last.end() + _SEGMENT_CHARS].lstrip(" \t\n*:")
    stop = _SENTENCE_END_RE.search(seg)
    seg = (seg[:stop.start()] if stop else seg).strip(" \t*")
    if not seg:
        return None, "none"
    is_math = _is_math(seg)
    parts = [p.strip() for p in _OR_RE.split(seg)[:5] if p.strip()]
    found = [a for a in (p if is_math else _mv_extract(p, timeout_s) for p in parts) if a]
    if not found:
        return None, "none"
    if all(answers_equivalent(a, found[0], timeout_s, max_chars) for a in found[1:]):
        return found[0][:max_chars], "answer_is"  # one answer, maybe restated: "1/2, or 0.5"
    if is_math:
        return seg[:max_chars], "answer_is"  # "x = 5 or x = 6" is the set {5, 6}, as in a box
    return None, "hedge"  # "the answer is 5, or maybe 6"


def extract_answer_with_method(text: str | None, max_chars: int = MAX_ANSWER_CHARS,
                               timeout_s: int = 3) -> tuple[str | None, str]:
    """(answer, how) in the order the module docstring gives.

    how: "boxed", "gsm8k", "answer_is", "math_verify", "last_number" or "none"; with answer None,
    also "bad_box: <why>" or "hedge" (the response gave an answer, but not one that can be graded).
    """
    if not text:
        return None, "none"
    text = _FENCE_RE.sub("\n", text)
    boxed, problem = _final_box(text, max_chars, timeout_s)
    if problem:
        return None, f"bad_box: {problem}"
    if boxed is not None:
        return boxed, "boxed"
    tail = _normalize_text(text[-_TAIL_CHARS:])
    gsm = [g.strip().rstrip(".").strip() for g in _GSM_RE.findall(tail)]
    if gsm and gsm[-1]:
        return gsm[-1][:max_chars], "gsm8k"
    answer, how = _anchored_answer(tail, max_chars, timeout_s)
    if answer is not None or how == "hedge":
        return answer, how
    answer = _mv_extract(tail[-_PARSE_CHARS:], timeout_s)
    if answer:
        return answer[:max_chars], "math_verify"
    nums = _NUM_RE.findall(tail)
    if nums:
        return nums[-1].replace(" ", "")[:max_chars], "last_number"
    return None, "none"


def extract_answer(text: str | None) -> str | None:
    """The final answer of a response (see the module docstring), or None when it has none to grade."""
    return extract_answer_with_method(text)[0]


# --- normalisation -------------------------------------------------------------------------------------

def _plain_decimal(mantissa: str, exponent: str) -> str | None:
    """'1.5', '3' -> '1500': exact, so math-verify compares plain numbers (it reads '1.5e3' as 1.5*e*3)."""
    try:
        return format(Decimal(f"{mantissa}e{exponent}").normalize(), "f")
    except (InvalidOperation, ValueError):
        return None


def _sci_e(m: re.Match) -> str:
    return _plain_decimal(m.group(1), m.group(2)) or m.group(0)


def _sci_times(m: re.Match) -> str:
    return _plain_decimal(m.group(1), m.group(2) or m.group(3)) or m.group(0)


def _repeating(m: re.Match) -> str:
    """0.1(6) -> \\frac{1}{6}: integer part + non-repeating digits + the repeating block, exactly."""
    sign, whole, fixed, rep = m.group(1), m.group(2) or "0", m.group(3) or "", m.group(4)
    value = Fraction(int(whole)) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(fixed))
    body = str(value.numerator) if value.denominator == 1 else f"\\frac{{{value.numerator}}}{{{value.denominator}}}"
    return f"{sign}{body}"


def _normalize_text(s: str) -> str:
    """Rewrites that are safe anywhere in a response: they only touch unambiguous number notations."""
    s = s.translate(_UNICODE)
    s = _THIN_THOUSANDS_RE.sub(lambda m: m.group(1) + re.sub(_THIN_SEP, "", m.group(2)), s)
    s = _SCI_E_RE.sub(_sci_e, s)
    s = _SCI_TIMES_RE.sub(_sci_times, s)
    s = _REPEAT_BAR_RE.sub(_repeating, s)
    return _TEXT_NUMBER_RE.sub(r"\1", s)


def _strip_trailing_words(s: str) -> str:
    """"18 dollars" -> "18"; keeps words that change the value ("2 million", "5 or 6")."""
    m = _TRAILING_WORDS_RE.fullmatch(s)
    if not m:
        return s
    words = {w.lower().rstrip(".") for w in m.group(2).split()}
    return s if words & _MATH_WORDS else m.group(1)


def _normalize_answer(s: str) -> str:
    """The normalisation of one final answer, applied to both sides of every comparison (see module doc)."""
    s = _normalize_text(s.strip())
    s = _REPEAT_PAREN_RE.sub(_repeating, s)  # "0.(3)": only in an answer, where "2.(3)" is no list item
    s = _PERCENT_RE.sub("", s)
    s = _strip_trailing_words(s)
    s = _SPACE_THOUSANDS_RE.sub(lambda m: m.group(1) + m.group(2).replace(" ", ""), s)
    m = _COMMA_NUMBER_RE.fullmatch(s)  # only a whole answer: "\{100,200\}" is a set, not 100200
    if m:
        s = (m.group(1) or "") + m.group(2).replace(",", "")
    return s.strip()


def _squash(s: str) -> str:
    return re.sub(r"\s+|\$", "", s)


# --- equivalence ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _parse(ans: str, timeout_s: int) -> tuple:
    from math_verify import parse  # heavy (sympy, antlr); imported on first use

    body = ans.strip()
    if not (body.startswith("$") and body.endswith("$")):
        body = f"${body}$"  # a bare "1/2" or "\{1,2\}" parses as LaTeX only inside math mode
    parsed = parse(body, parsing_timeout=_alarm(timeout_s))
    return tuple(parsed) if parsed else tuple(parse(ans, parsing_timeout=_alarm(timeout_s)))


def answers_equivalent(a: str | None, b: str | None, timeout_s: int = 3, max_chars: int = MAX_ANSWER_CHARS) -> bool:
    """True when two final answers denote the same value (1/2 = 0.5 = \\frac{1}{2}; sets, intervals, units).

    Symmetric: math-verify treats its first argument as the gold answer and some pairs hold in one
    direction only (the interval (1, \\infty) as gold does not accept "x > 1", the reverse does), so both
    directions are tried. They run in one fixed order (sorted), so that a timeout cutting the second
    direction gives the same verdict for (a, b) and (b, a). Never raises. Over-long answers are compared
    as plain strings only.
    """
    if a is None or b is None:
        return False
    a, b = str(a), str(b)
    if _squash(a) == _squash(b):
        return _squash(a) != ""
    if len(a) > max_chars or len(b) > max_chars:
        return False
    a, b = sorted((_normalize_answer(a), _normalize_answer(b)))
    if _squash(a) == _squash(b):
        return _squash(a) != ""
    try:
        from math_verify import verify

        pa, pb = _parse(a, timeout_s), _parse(b, timeout_s)
        if not pa or not pb:
            return False
        t, t0 = _alarm(timeout_s), time.monotonic()
        if verify(list(pa), list(pb), timeout_seconds=t):
            return True
        if time.monotonic() - t0 >= timeout_s:  # sympy spent the budget; the other direction would too
            return False
        return bool(verify(list(pb), list(pa), timeout_seconds=t))
    except Exception:  # math-verify is best effort; a parse failure means "not shown equal"
        return False


# --- scoring -------------------------------------------------------------------------------------------

def _gold_answer(gold: object, max_chars: int, timeout_s: int) -> tuple[str | None, str | None]:
    """(gold text, problem). Datasets store the gold as "18", "\\boxed{18}" or a GSM8K solution ending
    "#### 18". A missing gold (None, NaN, empty, or the "None"/"nan" that str() makes of one) is a data
    error. It is never turned into the text "None", which a response could then match."""
    if gold is None or (isinstance(gold, float) and math.isnan(gold)):
        return None, "missing gold answer"
    text = gold if isinstance(gold, str) else str(gold)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    boxed, problem = _final_box(text, max_chars, timeout_s)
    if problem:
        return None, f"bad gold box: {problem}"
    text = (boxed if boxed is not None else text).strip()
    if text.lower() in _MISSING_GOLD:
        return None, "missing gold answer"
    return text, None


_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_FRACTION_RE = re.compile(r"([+-]?)(?:(\d+)/(\d+)|\\[dt]?frac\{(\d+)\}\{(\d+)\}|\\[dt]?frac(\d)(\d))")
_ASSIGNMENT_RE = re.compile(r"[A-Za-z]=")
_TEXT_WORDS_RE = re.compile(r"\\(?:text|mbox|mathrm)\{([A-Za-z .]*)\}\s*$")
_BOX_WRAP_RE = re.compile(r"(?:\\boxed|\\fbox)?\{(.*)\}")


def _number_literal(answer: str) -> bool:
    """True for a plain number: a signed decimal ("13", "-4", "13.0", ".5") or a fraction in lowest
    terms ("1/2", "-\\frac{3}{4}"), after the comparison's normalisation ("1,000", "1.5e3", "50\\%" and
    unit words are numbers there). An answer may name its variable ("x = 13"). Not: any arithmetic
    ("7+15-9", "26/2", "\\frac{26}{2}", "-(-13)", "\\sqrt{169}")."""
    text = _TEXT_WORDS_RE.sub(r" \1", _normalize_answer(answer))  # "18 \\text{ dollars}" -> "18 dollars"
    s = _squash(_strip_trailing_words(text.strip()))
    while _BOX_WRAP_RE.fullmatch(s):  # "\\boxed{\\boxed{5}}" extracts as "\\boxed{5}"
        s = _BOX_WRAP_RE.fullmatch(s).group(1)
    if _ASSIGNMENT_RE.match(s):
        s = s[2:]
    if _DECIMAL_RE.fullmatch(s):
        return True
    m = _FRACTION_RE.fullmatch(s)
    if not m:
        return False
    num, den = [int(x) for x in m.groups()[1:] if x is not None]
    return den > 1 and math.gcd(num, den) == 1


# an arithmetic operator, in symbols, LaTeX or words, and what may sit between it and its operands
_OPERATOR = (r"(?:[+*/\-\u2214\u2795\u2796]|\\(?:times|cdot|div|pm|mp|oplus|ominus)(?![A-Za-z])"
             r"|\b(?:plus|minus|times|divided\s+by|multiplied\s+by)\b)")
_GAP = r"(?:\s|\$|~|\\[,;:! ]|\\q?quad\b|\\mathbin|[{}])*"
_OPERAND_LEFT_RE = re.compile(rf"[\d)]{_GAP}{_OPERATOR}{_GAP}$", re.I)
_OPERAND_RIGHT_RE = re.compile(rf"{_GAP}{_OPERATOR}{_GAP}[\d(]", re.I)
_EQUALS_RE = re.compile(r"(?<![<>!=:/\\])=(?![=/])")  # "=", not "!=", "<=", ">=", "==", "=/=", ":="
_CHAIN_SIDE_RE = re.compile(r"(?:[\s\d+*/().^{}\-]|\\(?:times|cdot|div|d?frac)(?![A-Za-z]))*|\s*[A-Za-z]\s*")


def _last_side(answer: str) -> str:
    """An equation chain answers with its last side: "8 + 13 - 7 = 14" -> "14" (and "x = 13" -> "13").
    The number rule then applies to that side, so "\\boxed{37 = 19 + 17}" is still arithmetic left
    undone. Only a chain whose earlier sides are arithmetic or one variable counts: "x != 36",
    "x <= 36", "x = 35, y = 36" and "35 \\text{ or } x = 36" are returned whole (and are no number)."""
    sides = _EQUALS_RE.split(answer)
    if len(sides) == 1 or not all(_CHAIN_SIDE_RE.fullmatch(side) for side in sides[:-1]):
        return answer
    return sides[-1].strip()


def _undone_operand(response: str, answer: str) -> bool:
    """True when the number graded from prose is an operand of arithmetic the response left undone.

    math-verify's own extraction (step 4) and the last-number fallback read one number out of an
    expression when punctuation follows it: "What is 19 + 17?" grades 17, "19+17?" grades 19, so the
    question echoed back scores whenever that operand is the result (0 + 17, 5 - 5 + 7: ~4% of the
    arithmetic task). The answer's last occurrence is checked (a sentence's closing "." is not part of
    it): with an operator between it and another number, in symbols, LaTeX or words, it is an operand,
    not a result ("19 + 17 = 36." grades 36, after "="; "0 + 17 = 17." grades the second 17)."""
    sign, digits = re.fullmatch(r"([+-]?)\s*(.*)", answer.strip(), re.S).groups()
    number = rf"{re.escape(sign)}\s*{re.escape(digits)}" if sign else re.escape(digits)
    text = _normalize_text(_FENCE_RE.sub("\n", response)[-_TAIL_CHARS:])
    last = None
    for last in re.finditer(rf"(?<![\d.]){number}(?!\d|\.\d)", text):
        pass
    if last is None:
        return False
    return bool(_OPERAND_LEFT_RE.search(text[:last.start()]) or _OPERAND_RIGHT_RE.match(text[last.end():]))


def _clamp(reward: float) -> float:
    """Rewards live in [0, 1] whatever the format terms: pass rates and advantage scales assume it.

    So a boxed bonus only lifts a wrong boxed answer, and an unboxed penalty only lowers a right unboxed one.
    """
    return min(1.0, max(0.0, reward))


def score_math(sample: Sample, cfg: MathRewardConfig) -> Score:
    """1.0 when the extracted answer equals the gold, else 0.0, plus the configured format term, clamped.

    A data error (no gold) scores a flat 0 without the format term, so every sample of that prompt gets
    the same reward and no gradient. A response without a gradable answer scores 0 with the reason. For
    a gold that is a number, an answer that is not a number (arithmetic left undone, such as the question
    copied into the box), or a number read from prose that is an operand of undone arithmetic, scores 0
    as "unsimplified" (`cfg.numbers_as_numbers`); an equation chain is graded by its last side.
    """
    gold, problem = _gold_answer(sample.answer, cfg.max_answer_chars, cfg.parse_timeout_s)
    if gold is None:
        return Score(sample.uid, 0.0, False, f"data_error: {problem}", None)
    answer, how = extract_answer_with_method(sample.response, cfg.max_answer_chars, cfg.parse_timeout_s)
    fmt = cfg.boxed_bonus if how == "boxed" else -cfg.unboxed_penalty
    if answer is None:
        reason = how if how.startswith("bad_box") or how == "hedge" else "no_answer"
        return Score(sample.uid, _clamp(fmt), False, reason, None)
    if cfg.numbers_as_numbers and _number_literal(gold):
        answer = _last_side(answer)
        if not _number_literal(answer) or (how in ("math_verify", "last_number")
                                           and _undone_operand(sample.response, answer)):
            return Score(sample.uid, _clamp(fmt), False, "unsimplified", answer)
    correct = answers_equivalent(gold, answer, cfg.parse_timeout_s, cfg.max_answer_chars)
    return Score(sample.uid, _clamp((1.0 if correct else 0.0) + fmt), correct,
                 "ok" if correct else "wrong_answer", answer)
