"""The guards a number answer passes before it is compared with a number gold, whatever read it.

RL optimises against the verifier, so an answer that only *looks* committed must not be paid:
- **not a number** ("unsimplified"): arithmetic left undone ("7 + 15 - 9", "26/2", "\\sqrt{169}"), the
  question copied into the box. A number is a signed decimal or a fraction in lowest terms (`number_literal`).
- **an equation chain** answers with its number sides, which must agree with each other and with every
  arithmetic side: "\\boxed{20 = 17 + 3}" is 20, "x = 19 = 20" and "37 = 19 + 17" are "contradiction".
  In prose, a number side just before the graded number must agree with it too ("x = 19 = 20").
- **an operand** ("unsimplified"): the graded number is an operand of arithmetic around it, in symbols,
  TeX or words ("What is 0 + 17?", "\\boxed 17 + 0", "zero plus 17", "the sum of 0 and 17").
- **listed operands** ("unsimplified"): the answer and a number beside it ("0 and 17", "0, 17") are both
  numbers of the question: its operands restated.
- **a bound, an approximation or one of two** ("hedge"): "less than 21", "at most 21", "over 20",
  "approximately 20", "20-ish", "between 19 and 21", "20 or 21", "20 vs 21", "20 to 21", "20, 21", "20 ∨ 21",
  "21 or more", and two numbers side by side in one answer ("\\boxed{20 $ 21}", `spaced_numbers`). A number
  question wants the number, not a range it lies in. A restatement that agrees ("17 + 3 = 20, so 20") is none.

The context checks read the text around the graded number (`Extraction.span`, rewards.math_extract) in
the guards' view (`_plain`): dress (colours, over-sets, struts, delimiters, unknown commands, list markers)
and every junk character become gaps, hedge signs (≤, ∨, ≈) their TeX spelling, and number and operator
words symbols (rewards.math_words). So a disguise between the number and an operator is no shield.
"""

from __future__ import annotations

import math
import re

from .math_equivalence import answers_equivalent
from .math_normalize import normalize_answer, squash, strip_trailing_words
from .math_words import words_to_symbols

_CONTEXT_CHARS = 300  # how far either side of the graded number the guards look

# --- number literals -----------------------------------------------------------------------------------
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_FRACTION_RE = re.compile(r"([+-]?)(?:(\d+)/(\d+)|\\[dt]?frac\{(\d+)\}\{(\d+)\}|\\[dt]?frac(\d)(\d))")
_ASSIGNMENT_RE = re.compile(r"[A-Za-z]=")
_TEXT_WORDS_RE = re.compile(r"\\(?:text|mbox|mathrm)\{([A-Za-z .]*)\}\s*$")
_WRAP_RE = re.compile(r"(?:\\boxed|\\fbox)?\{(.*)\}|\((.*)\)")
_DECIMAL_COMMA_RE = re.compile(r"\s*(-?\d+),(\d{1,2}|\d{4,})\s*")


def number_literal(answer: str) -> bool:
    """True for a plain number: a signed decimal ("13", "-4", "13.0", ".5") or a fraction in lowest
    terms ("1/2", "-\\frac{3}{4}"), after the comparison's normalisation ("1,000", "1.5e3", "50\\%" and
    unit words are numbers there), maybe in parentheses ("(20)"). An answer may name its variable
    ("x = 13"). Not: any arithmetic ("7+15-9", "26/2", "\\frac{26}{2}", "-(-13)", "\\sqrt{169}")."""
    text = _TEXT_WORDS_RE.sub(r" \1", normalize_answer(answer))  # "18 \\text{ dollars}" -> "18 dollars"
    s = squash(strip_trailing_words(text.strip()))
    while _WRAP_RE.fullmatch(s):  # "\\boxed{\\boxed{5}}" extracts as "\\boxed{5}"; "(20)" is 20
        m = _WRAP_RE.fullmatch(s)
        s = m.group(1) if m.group(1) is not None else m.group(2)
    if _ASSIGNMENT_RE.match(s):
        s = s[2:]
    if _DECIMAL_RE.fullmatch(s):
        return True
    m = _FRACTION_RE.fullmatch(s)
    if not m:
        return False
    num, den = [int(x) for x in m.groups()[1:] if x is not None]
    return den > 1 and math.gcd(num, den) == 1


def decimal_comma(answer: str) -> str:
    """"20,0" -> "20.0", "3,14" -> "3.14": one comma followed by other than three digits is a decimal
    comma (European notation), so "20,0" answers 20. Three digits are thousands ("1,500" is 1500, see
    rewards.math_normalize); a space after the comma makes a list ("20, 0": two numbers, no answer).
    Safe as a hedge: "19,20" reads 19.2, which answers neither 19 nor 20."""
    m = _DECIMAL_COMMA_RE.fullmatch(answer)
    return f"{m.group(1)}.{m.group(2)}" if m else answer


# --- equation chains -----------------------------------------------------------------------------------
_EQUALS_RE = re.compile(r"(?<![<>!=:/\\])=(?![=/])")  # "=", not "!=", "<=", ">=", "==", "=/=", ":="
_CHAIN_SIDE_RE = re.compile(r"(?:[\s\d+*/().^{}\-]|\\(?:times|cdot|div|d?frac)(?![A-Za-z]))*|\s*[A-Za-z]\s*")
_VARIABLE_RE = re.compile(r"\s*[A-Za-z]?\s*")


def chain_answer(answer: str, timeout_s: int, max_chars: int) -> tuple[str, str | None]:
    """(the number an equation chain answers with, problem). "8 + 13 - 7 = 14" and "14 = 8 + 13 - 7"
    answer 14; "x = 13" answers 13. Every number side must agree, and every arithmetic side must equal
    them, else "contradiction" ("x = 19 = 20", "37 = 19 + 17"). Only a chain of arithmetic, numbers and
    one variable counts: "x != 36", "x = 35, y = 36" and "35 \\text{ or } x = 36" are returned whole (and
    are no number). A chain without a number side answers with its last side (still arithmetic)."""
    sides = [s.strip() for s in _EQUALS_RE.split(answer)]
    if len(sides) == 1 or not all(_CHAIN_SIDE_RE.fullmatch(side) for side in sides):
        return answer, None
    numbers = [s for s in sides if s and number_literal(s)]
    if not numbers:
        return sides[-1], None
    others = [s for s in sides if s not in numbers and not _VARIABLE_RE.fullmatch(s)]
    if any(not answers_equivalent(s, numbers[-1], timeout_s, max_chars) for s in numbers[:-1] + others):
        return numbers[-1], "contradiction"
    return numbers[-1], None


# --- the context around the graded number --------------------------------------------------------------
# an arithmetic operator, in symbols or TeX (words are turned into symbols first), and what may sit
# between it and its operands: spaces, math delimiters, brackets, TeX spacing and grouping, a box's opening
_OPERATOR = (r"(?:[+*/\-]|\\(?:times|cdot|div|pm|mp|oplus|ominus|otimes|ast|star|dotplus|boxplus|boxminus"
             r"|boxtimes|uplus|setminus|smallsetminus|bullet)(?![A-Za-z]))++")  # "0 ++ 17" as well
_GAP = (r"(?:\s|\$|~|\\[,;:! ()\[\]\\]|\\q?quad\b|\\(?:mathbin|mathrel|mathord|text|mathrm|mbox|hbox|operatorname"
        r"|boxed|fbox|framebox|newline|linebreak|par)\b|[{}()\[\]])*+")
_N = r"-?\d+(?:\.\d+)?"
_OPERAND_LEFT_RE = re.compile(rf"[\d)]{_GAP}(?:{_OPERATOR}{_GAP})+$")
_OPERAND_RIGHT_RE = re.compile(rf"{_GAP}(?:{_OPERATOR}{_GAP})+[\d(]")
_OPERAND_BEFORE_SIGN_RE = re.compile(rf"[\d)]{_GAP}$")
# "the sum of <answer> and 17": the answer is the first operand of arithmetic written in words
_FIRST_OPERAND_LEFT_RE = re.compile(
    r"\b(?:(?:sum|total|difference|product|quotient)\s+(?:of|between)|add(?:ing)?|subtract(?:ing)?"
    rf"|multiply(?:ing)?)\s+(?:the\s+numbers\s+)?{_GAP}$", re.I)
_FIRST_OPERAND_RIGHT_RE = re.compile(rf"{_GAP}(?:,|and|&|with|to|from|by)\s+{_GAP}{_N}", re.I)
_BOUND_LEFT_RE = re.compile(
    r"(?:\b(?:less|fewer|more|greater|smaller|larger|bigger|higher|lower)\s+than(?:\s+or\s+equal\s+to)?"
    rf"|\bat\s+(?:least|most)|\bbetween|\bunder|\bbelow|\babove|\bover|\bbeyond|\bexceeding|\bup\s+to|[<>]=?"
    rf"|\bwithin\s+{_N}\s+of|\banything\s+but|\bexcept|\bapprox(?:imately|\.)?|\babout|\baround|\broughly"
    rf"|\bnearly|\balmost|\bcirca|\bclose\s+to|\bmore\s+or\s+less|\+\s*or\s*-"
    rf"|\\(?:le|ge|leq|geq|lt|gt|leqslant|geqslant|lesssim|gtrsim|approx|sim|simeq|cong|pm|mp)(?![A-Za-z])|\bbetween\s+{_N}\s*(?:and|&))\s*{_GAP}$",
    re.I)
_BOUND_RIGHT_RE = re.compile(
    rf"{_GAP}(?:,?\s*or\s+(?:more|less|fewer|greater|higher|lower|above|below|so|thereabouts)\b"
    rf"|and\s+(?:above|below|up|under|over|less|more)\b|at\s+(?:most|least)\b|max(?:imum)?\b|min(?:imum)?\b"
    rf"|-?\s*ish\b|approx|,?\s*if\s+not\b|\\(?:le|ge|leq|geq|lt|gt)(?![A-Za-z])|[<>])", re.I)
# how two numbers are offered side by side: "20 or 21", "20 vs 21", "20 to 21", "20, 21", "20 \\lor 21"
_ALTERNATIVE = (r"(?:,?\s*(?:\bor\b|\bvs\b\.?|\bversus\b|\band\s*/\s*or\b|\bnor\b|\bto\b|\bthrough\b|\bthru\b"
                r"|\balternatively\b|\botherwise\b|\belse\b|\bpossibly\b|\bperhaps\b|\bmaybe\b|\bbut\s+could\s+be\b"
                r"|\bif\s+not\b|\band\b|\beither\s+way\b|\bunless(?:\s+it\s+is)?\b|\bthough\b|\\approx\b|\\sim\b|\bou\b|\boder\b|\bo\s?r\b|\b0r\b|或|или|\\lor\b|\\vee\b)|\s*[,;?]|\s+-\s+)"
                r"\s*(?:maybe\s+|perhaps\s+|even\s+|possibly\s+|,\s*)?")
# "20 or 21": one of two numbers ("1/2, or 0.5" restates one number and is no hedge)
_OTHER = r"(-?\d+(?:\.\d+)?(?:/\d+)?)"
# "x = 19 = 20": a number side just before the graded one ("17 + 3 = 20" has arithmetic there)
_EQUAL_NUMBER_LEFT_RE = re.compile(rf"(?:^|(?<![<>!:/\\])=|[A-Za-z:,$]|\n)\s*{_OTHER}\s*(?<![<>!=:/\\])=\s*{_GAP}$")
# "0 and 17", "0, 17", "0 with 17": the answer listed beside another number with no operator
_LISTED_LEFT_RE = re.compile(rf"{_OTHER}{_GAP}(?:,|;|&|\band\b|\bwith\b)\s*+{_GAP}$", re.I)
_LISTED_RIGHT_RE = re.compile(rf"{_GAP}(?:,|;|&|\band\b|\bwith\b)\s*+{_GAP}{_OTHER}", re.I)
_QUESTION_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_OR_LEFT_RE = re.compile(rf"{_OTHER}{_GAP}{_ALTERNATIVE}{_GAP}$", re.I)
_OR_RIGHT_RE = re.compile(rf"{_GAP}{_ALTERNATIVE}{_GAP}{_OTHER}", re.I)
_SPACED_NUMBERS_RE = re.compile(r"\d[\s$]++-?\d")
_HEDGE_SIGNS = str.maketrans({"\u2264": r" \le ", "\u2265": r" \ge ", "\u2228": " or ", "\u22c1": " or ",
                              "\u22bb": " or ", "\u2016": " or ", "\u2014": " or ", "\u2248": r" \approx ",
                              "\u2243": r" \approx ", "\u223c": r" \sim ", "\u2245": r" \approx ",
                              "\u2a7d": r" \le ", "\u2a7e": r" \ge ", "\u2266": r" \le ", "\u2267": r" \ge ",
                              "\u2272": r" \le ", "\u2273": r" \ge ", "\u2a95": r" \le ", "\u2a96": r" \ge "})
"""Signs that offer a range or an alternative (≤, ∨, ⋁, ⊻, ‖, the em dash "20—21", ≈) in the guards' spelling."""


def spaced_numbers(answer: str) -> bool:
    """True for an answer that holds two numbers side by side ("20\\n21", "20 $ 21", "0 1"): squashed, they
    would read as one number ("2021")."""
    return _SPACED_NUMBERS_RE.search(normalize_answer(answer)) is not None


# What sits between numbers but means nothing to the guards becomes a gap, so a disguise cannot hide
# an operator from them: a colour, an over-set or raised box around the operator ("0 \\color{red}{+} 17",
# "\\overset{}{+}", "\\raisebox{0pt}{+}"), delimiters and struts ("| 17 |", "\\langle 17\\rangle", "\\strut"),
# numbered-list markers ("\\n1. 17"), and every character that is no letter, digit, operator or bracket
# ("`+`", "# 17", a low quote).
_DRESS_CMD_RE = re.compile(
    r"\\(?:textcolor|color|colorbox)\s{0,5}+(?:\[[^\]]{0,30}+\])?\s{0,5}+\{[^{}]{0,40}+\}"
    r"|\\(?:overset|underset|stackrel|raisebox|scalebox|resizebox)\s{0,5}+\{[^{}]{0,40}+\}(?:\s{0,5}+\{!?\})?"
    r"|\\fcolorbox\s{0,5}+\{[^{}]{0,40}+\}\s{0,5}+\{[^{}]{0,40}+\}"  # "\\fcolorbox{red}{white}{17}": frame and fill
    r"|\\(?:raise|lower|moveleft|moveright)\s{0,5}+-?[\d.]{1,10}+\s{0,5}+(?:[a-z]{2})?"  # "\\raise1pt\\hbox{17}"
    r"|\\(?:strut|mathstrut|langle|rangle|lbrace|rbrace|lvert|rvert|lVert|rVert|vert|Vert|mid)(?![A-Za-z])|\\[{}|]")
_TEXT_WORD_RE = re.compile(r"\\(?:text|mathrm|mbox|textrm)\s{0,5}+\{\s{0,5}+([A-Za-z]{1,10}+(?: [A-Za-z]{1,10}+)?)\s{0,5}+\}")
_FILLER_RE = re.compile(r"\b(?:the\s{1,5}+)?(?:number|value|quantity)\b", re.I)  # "0 + \\text{ the number }17"
_UNKNOWN_CMD_RE = re.compile(
    r"\\(?!(?:times|cdot|div|pm|mp|oplus|ominus|otimes|ast|star|dotplus|boxplus|boxminus|boxtimes|uplus|setminus"
    r"|smallsetminus|bullet|le|ge|leq|geq|lt|gt|leqslant|geqslant|lesssim|gtrsim|neq|ne|frac|dfrac|tfrac|sqrt|approx"
    r"|sim|simeq|cong|lor|vee"
    r"|land|wedge|infty)(?![A-Za-z]))[A-Za-z]{1,30}+")  # any other command ("\\overline{", "\\hat{") is dress
_LIST_MARKER_RE = re.compile(r"^[ \t]{0,3}+\d{1,9}+[.)][ \t]|(?<=\n)[ \t]{0,3}+[-*+][ \t]", re.M)
"""A list item's marker: "\n1. 17", "\n- 17" (a bullet only after a newline: the window's own start, just after the
graded number, is no line start for "17 + 0")."""
_JUNK_RE = re.compile(r"[^\w\s+\-*/^=<>!.,;:?()\[\]{}\\$%~]")


def _plain(window: str) -> str:
    """The guards' view of the text around the graded number: dress and junk become gaps (see above)."""
    window = _TEXT_WORD_RE.sub(r" \1 ", _DRESS_CMD_RE.sub(" ", window.translate(_HEDGE_SIGNS)))  # "0 \\text{ and } 17": a word
    window = _FILLER_RE.sub(" ", _UNKNOWN_CMD_RE.sub(" ", _LIST_MARKER_RE.sub(" ", window)))
    return words_to_symbols(_JUNK_RE.sub(" ", window))


def _locate(text: str, answer: str, within: tuple[int, int]) -> tuple[int, int] | None:
    """The span of the answer's last occurrence in text[within] (a sentence's closing "." is no part of
    it), or None."""
    sign, digits = re.fullmatch(r"([+-]?)\s*(.*)", answer.strip(), re.S).groups()
    number = rf"{re.escape(sign)}\s*{re.escape(digits)}" if sign else re.escape(digits)
    last = None
    for last in re.compile(rf"(?<![\d.]){number}(?!\d|\.\d)").finditer(text, *within):
        pass
    return last.span() if last else None


def _question_numbers(question: str) -> set[float]:
    return {float(n) for n in _QUESTION_NUMBER_RE.findall(question)}


def _listed_operands(left: str, right: str, answer: str, question: str) -> bool:
    """True when the answer and a number listed beside it ("0 and 17") are both numbers of the question:
    the question's operands restated, not its result."""
    numbers = _question_numbers(question)
    try:
        if float(answer) not in numbers:
            return False
    except ValueError:
        return False
    listed = [m.group(1) for m in (_LISTED_LEFT_RE.search(left), _LISTED_RIGHT_RE.match(right)) if m]
    return any("/" not in n and float(n) in numbers for n in listed)


def context_problem(text: str, span: tuple[int, int] | None, answer: str, question: str = "") -> str | None:
    """"hedge" when the graded number is bounded or one of two, "unsimplified" when it is an operand
    (or is listed beside another of the question's numbers, `question` being the prompt), else None. `span` is the part of `text` the answer was read from (None: all of it); the number's
    last occurrence there is judged, or the whole span when the answer is not written out in it."""
    within = span or (0, len(text))
    answer = strip_trailing_words(answer.strip())  # "20 at most", "0ish": the number, then what follows it
    found = _locate(text, answer, within) or span
    if found is None:
        return None
    left = _plain(text[max(0, found[0] - _CONTEXT_CHARS):found[0]])
    right = _plain(text[found[1]:found[1] + _CONTEXT_CHARS])
    if _BOUND_LEFT_RE.search(left) or _BOUND_RIGHT_RE.match(right):
        return "hedge"
    side = _EQUAL_NUMBER_LEFT_RE.search(left)
    if side and not answers_equivalent(side.group(1), answer):
        return "contradiction"
    if _listed_operands(left, right, answer, question):
        return "unsimplified"
    if _OPERAND_LEFT_RE.search(left) or _OPERAND_RIGHT_RE.match(right):
        return "unsimplified"
    if text[found[0]] in "+-" and _OPERAND_BEFORE_SIGN_RE.search(left):  # "0 -8": the sign is a minus
        return "unsimplified"
    if _FIRST_OPERAND_LEFT_RE.search(left) and _FIRST_OPERAND_RIGHT_RE.match(right):
        return "unsimplified"
    others = [m.group(1) for m in (_OR_LEFT_RE.search(left), _OR_RIGHT_RE.match(right)) if m]
    if any(not answers_equivalent(other, answer) for other in others):
        return "hedge"
    return None
