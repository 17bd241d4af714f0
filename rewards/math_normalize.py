"""Number notations rewritten to one spelling, so that equal answers compare equal.

`normalize_text` rewrites only unambiguous notations and is safe anywhere in a response (the tail that
extraction reads): scientific notation (`1.5e3`, `1.5 \\times 10^3` become 1500), repeating decimals
(`0.\\overline{3}` becomes \\frac{1}{3}), `\\text{5}` becomes 5. (Unicode, spacing and thin-space
thousands are rewritten earlier, for the whole response, by rewards.math_clean.)
`normalize_answer` is applied to both sides of every comparison, so the relation stays symmetric; on top
of the above: `0.(3)` is \\frac{1}{3}; **percent is a unit and is dropped** ("50\\%" = 50, "50\\%" != 0.5:
math-verify alone accepts 50% = 50 and 50% = 0.5 but not 50 = 0.5, which is not transitive, and
clustering assumes transitivity; MATH and GSM8K store "what percent" answers as the bare number);
trailing unit words ("18 dollars" is 18); thousands separators (`1 000`, `1,000`, as the whole answer).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from .math_clean import clean_response

_SPACE_THOUSANDS_RE = re.compile(r"(?<![\d.])(\d{1,3})((?: \d{3})+)(?![\d.])")
_COMMA_NUMBER_RE = re.compile(r"\s*(\\?\$)?\s*(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?)\s*")
_SCI_E_RE = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([+-]?\d{1,3})(?![\w.])")
_SCI_TIMES_RE = re.compile(
    r"(?<![\w.^_{\\])(\d+(?:\.\d+)?)\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*(?:\{\s*([+-]?\d{1,3})\s*\}|([+-]?\d))")
_REPEAT_BAR_RE = re.compile(r"(?<![\d.])(-?)(\d{0,30})\.(\d{0,30})\s*\\(?:overline|bar|dot)\s*\{(\d{1,30})\}")
_REPEAT_PAREN_RE = re.compile(r"(?<![\d.])(-?)(\d{1,30})\.(\d{0,30})\((\d{1,30})\)")
_TEXT_NUMBER_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{\s*(-?\d[\d.,]*)\s*\}")
_PERCENT_RE = re.compile(r"(?<=\d)\s*(?:\\?%|\\text\s*\{\s*(?:\\?%|percent)\s*\}|percent\b)")
_TRAILING_WORDS_RE = re.compile(r"\s*+(\\?\$?\s*+-?\d[\d.,]*+(?:/\d++)?)\s*+((?:[A-Za-z]{2,}+\.?+\s*+)++)")
_MATH_WORDS = {"or", "and", "pi", "sqrt", "to", "plus", "minus", "times", "over", "by", "squared", "cubed",
               "root", "dozen", "hundred", "thousand", "million", "billion", "trillion", "infinity", "inf"}
"""Words after a number that change its value: "18 dollars" is 18, "2 million" and "5 or 6" are not."""


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


def normalize_text(s: str) -> str:
    """Rewrites that are safe anywhere in a response: they only touch unambiguous number notations."""
    s = _SCI_E_RE.sub(_sci_e, s)
    s = _SCI_TIMES_RE.sub(_sci_times, s)
    s = _REPEAT_BAR_RE.sub(_repeating, s)
    return _TEXT_NUMBER_RE.sub(r"\1", s)


def strip_trailing_words(s: str) -> str:
    """"18 dollars" -> "18"; keeps words that change the value ("2 million", "5 or 6")."""
    m = _TRAILING_WORDS_RE.fullmatch(s)
    if not m:
        return s
    words = {w.lower().rstrip(".") for w in m.group(2).split()}
    return s if words & _MATH_WORDS else m.group(1)


def normalize_answer(s: str) -> str:
    """The normalisation of one final answer, applied to both sides of every comparison (see module doc)."""
    s = normalize_text(clean_response(s.strip()))
    s = _REPEAT_PAREN_RE.sub(_repeating, s)  # "0.(3)": only in an answer, where "2.(3)" is no list item
    s = _PERCENT_RE.sub("", s)
    s = strip_trailing_words(s.strip())
    s = _SPACE_THOUSANDS_RE.sub(lambda m: m.group(1) + m.group(2).replace(" ", ""), s)
    m = _COMMA_NUMBER_RE.fullmatch(s)  # only a whole answer: "\{100,200\}" is a set, not 100200
    if m:
        s = (m.group(1) or "") + m.group(2).replace(",", "")
    return s.strip()


def squash(s: str) -> str:
    """The answer without whitespace and dollar signs: equal squashes are equal answers."""
    return re.sub(r"\s+|\$", "", s)
