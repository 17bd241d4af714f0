"""Numbers and arithmetic written in words: "twenty", "zero plus 17", "the sum of 0 and 17".

Two uses, kept apart on purpose. `number_in_words` reads an answer that is *only* a number in words
("twenty", "Twenty-three.", "twenty (20)"), so a response that answers in words can be graded.
`words_to_symbols` rewrites the words around a graded number for the guards (rewards.math_guards): there
"zero plus" is "0 +" and "the sum of 0 and" is "0 +", so the question echoed in words is still an echo.
Words are not turned into numbers anywhere else: "17 + 3 = 20, which has two digits" must not grade 2.
Numbers up to 999 are read; that covers every task this project generates.
"""

from __future__ import annotations

import re

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_UNIT = "|".join(_UNITS[::-1])  # longest first: "fourteen" before "four"
_TEN = "|".join(_TENS)
_DIGIT = "nine|eight|seven|six|five|four|three|two|one"
_BELOW_100 = rf"(?:(?:{_TEN})(?:[-\s](?:{_DIGIT}))?|{_UNIT})"
_PHRASE = rf"(?:(?:{_UNIT}|a)\s+hundred(?:\s+(?:and\s+)?{_BELOW_100})?|{_BELOW_100})"
_PHRASE_RE = re.compile(rf"(?<![\w-])(?:negative\s+)?{_PHRASE}(?![\w-])", re.I)  # "minus" is an operator here
_ANSWER_RE = re.compile(rf"\s*(?:minus\s+|negative\s+)?({_PHRASE})\s*(?:\(\s*(-?\d+)\s*\))?\s*[.!]?\s*", re.I)
_WORD_RE = re.compile(r"[a-z]+")

_N = r"-?\d+(?:\.\d+)?"
_OPERATOR_WORDS = [
    # after a number only: alone, "less than 21" is a bound (rewards.math_guards), not arithmetic
    (re.compile(r"(?<=\d)\s+(?:more|greater)\s+than\b", re.I), " + "),
    (re.compile(r"(?<=\d)\s+(?:less|fewer)(?:\s+than)?\b", re.I), " - "),
    (re.compile(r"(?<=\d)\s+over\b", re.I), " / "),
    (re.compile(r"\b(?:plus|added\s+to|increased\s+by)\b", re.I), " + "),
    (re.compile(r"\b(?:minus|take\s+away|decreased\s+by)\b", re.I), " - "),
    (re.compile(r"\b(?:times|multiplied\s+by)\b", re.I), " * "),
    (re.compile(r"\bdivided\s+by\b", re.I), " / "),
    # "the sum of 0 and 17", "the product of 3 and", "add 0 to 17", "subtract 3 from 20"
    (re.compile(rf"\b(?:(?:sum|total|difference|product|quotient)\s+(?:of|between)|add(?:ing)?|subtract(?:ing)?"
                rf"|multiply(?:ing)?)\s+(?:the\s+numbers\s+)?({_N})\s*(?:,|and|&|with|to|from|by)\s+", re.I),
     r"\1 + "),
]


def _value(phrase: str) -> int:
    words = [w for w in _WORD_RE.findall(phrase.lower()) if w not in ("and", "minus", "negative")]
    sign = -1 if re.match(r"\s*(?:minus|negative)\b", phrase, re.I) else 1
    if "hundred" in words:
        i = words.index("hundred")
        head = 1 if words[i - 1] == "a" else _VALUE[words[i - 1]]
        return sign * (100 * head + sum(_VALUE[w] for w in words[i + 1:]))
    return sign * sum(_VALUE[w] for w in words)


def number_in_words(answer: str) -> str | None:
    """The digits of an answer that is only a number in words ("twenty", "twenty (20)"), else None.

    A restatement in digits must agree: "twenty (21)" is no answer."""
    m = _ANSWER_RE.fullmatch(answer)
    if not m:
        return None
    value = _value(m.group(0).split("(")[0])
    if m.group(2) is not None and int(m.group(2)) != value:
        return None
    return str(value)


def words_to_symbols(text: str) -> str:
    """Number words as digits and arithmetic words as operators, for the guards only (module doc)."""
    text = _PHRASE_RE.sub(lambda m: str(_value(m.group())), text)
    for pattern, replacement in _OPERATOR_WORDS:
        text = pattern.sub(replacement, text)
    return text
