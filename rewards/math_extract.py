"""Pull the final answer out of a response, and say where it was read.

RL optimises against this file: whatever number the extractor grades, the policy learns to steer. So
extraction never guesses. When a response is ambiguous it has no answer, and the reason says why.
It reads the response as it renders (rewards.math_clean: invisible text gone, Unicode and TeX dress
normalised), with ``` code fences removed (code can print anything) and **disowned numbers** removed:
"not 20", "isn't 20", "never 20" are no candidates. Then, first match wins:

1. **Boxes.** If the response holds any `\\boxed`/`\\fbox`, only box contents can be graded. Every box must
   be well formed and all boxes must agree. Otherwise there is no answer: "bad_box: unbalanced",
   "bad_box: too long" (over `max_chars`), "bad_box: empty" (only empty boxes; a stray `\\boxed{}` beside a
   real one is skipped), "bad_box: too many" (over MAX_BOXES) or "bad_box: several answers". We never
   fall back to a number: the last number may sit inside or after a broken box, so a policy could choose
   it by padding. A good box followed by a broken one scores 0 as well. Several different boxed answers
   ("\\boxed{3} or \\boxed{4}") score 0: a careful grader would not pick one for the model, and
   semantic-entropy clustering needs the one answer the response commits to. A multi-valued answer
   belongs in one box: `\\boxed{2, 3}`. An unbraced box ("\\boxed 5") reads one word.
2. **"#### x"**, GSM8K's final-answer line (the last one).
3. **"answer is x" / "answer: x"**: the last such anchor, read to the end of its sentence. math-verify's
   own anchor looks up to 100 characters past "answer" for "= y", so "The answer is 5. Check: 5 + 1 = 6"
   would grade 6 there. Two different answers joined by "or" in prose are a hedge ("hedge"); in math
   ("5 \\text{ or } 6", "$5$ or $6$") they read as the set {5, 6}, as they do in a box.
4. **math-verify's own extraction** (LaTeX environments, expressions, numbers) over the last
   `_PARSE_CHARS` characters.
5. **The last number**, or a response that is only a number in words ("Twenty.").

Steps 2 to 5 run only when the response holds no box at all. Each answer read as a whole (a box, an
anchor, "####") may be a number in words ("twenty", "twenty (20)"). **A correction is the answer**:
after the last "Actually, 20" / "No, 20" / "or rather 20" / "Correction: 20" (a marker followed by the
number), the steps run on the text from that number on; its answer wins unless it agrees with the
answer of the whole response (which then keeps its form, e.g. boxed). Broken boxes anywhere still
score 0, but boxes that disagree only across a correction ("\\boxed{19}. No, \\boxed{20}") are graded by
the correction. Whatever step reads the answer, the same guards (rewards.math_guards) then judge it.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

from .math_clean import clean_response
from .math_equivalence import MAX_ANSWER_CHARS, alarm, answers_equivalent
from .math_normalize import normalize_answer, normalize_text
from .math_words import number_in_words

MAX_BOXES = 20
"""More boxes than this is spam, not an answer; it also bounds the work per response."""
_TAIL_CHARS = 20_000  # the final answer lives near the end; scanning 1 MB for "####" or anchors is waste
_PARSE_CHARS = 2_000  # math-verify's regexes run over this much of the tail only
_SEGMENT_CHARS = 300  # how far past "answer is" the stated answer may run

_FENCE_RE = re.compile(r"```.*?```", re.S)
_BOX_RE = re.compile(r"\\(?:boxed|fbox|framebox)(?![A-Za-z])\s*")
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
_NUMBER_AHEAD = r"(?=\s{0,20}+(?:\$\s{0,5}+)?(?:-\s{0,5}+)?(?:\d|\.\d|\\(?:boxed|fbox|frac|dfrac)))"
_DISOWNED_RE = re.compile(
    r"\b(?:not|isn'?t|is\s{1,5}not|never|cannot\s{1,5}be|can'?t\s{1,5}be|won'?t\s{1,5}be|wouldn'?t\s{1,5}be)\s{1,20}+"
    r"(?:equal\s{1,5}to\s{1,5}+|exactly\s{1,5}+|just\s{1,5}+|quite\s{1,5}+|simply\s{1,5}+|be\s{1,5}+"
    r"|the\s{1,5}answer\s{0,5}+[:,]?\s{0,5}+)?"
    r"(\$?\s{0,5}+(?:\\(?:boxed|fbox)\s{0,5}+\{[^{}]{0,100}\}|-?\d[\d,]{0,40}+(?:\.\d{1,40})?)\s{0,5}+\$?)", re.I)
_CORRECTION_RE = re.compile(
    r"(?<![\w'])(?:actually|correction|oops|sorry|i\s+mean|or\s+rather|rather|make\s+that|scratch\s+that"
    r"|no\s{0,5}+[,.!:;]|nope\s{0,5}+[,.!:;]?|wait\s{0,5}+[,.!:;])(?:\s|[,:;.!-]){0,20}+(?:no\s{0,5}+[,.!]\s{0,5}+)?"
    r"(?:it(?:'s|\s{1,5}is|\s{1,5}should\s{1,5}be|\s{1,5}equals|\s{1,5}was)"
    r"|the\s{1,5}(?:final\s{1,5}|correct\s{1,5}|real\s{1,5})?answer\s{1,5}is"
    r"|that(?:'s|\s{1,5}is|\s{1,5}should\s{1,5}be)|i\s{1,5}meant?|(?:it\s{1,5})?should\s{1,5}be|is)?" + _NUMBER_AHEAD, re.I)


@dataclasses.dataclass(frozen=True)
class Extraction:
    """What was read and how. `text` and `span` say where, for the guards: `span` is the part of `text`
    the answer was read from (a box, a stated answer, a number), or None when the reader (math-verify)
    does not say; the guards look for the answer's last occurrence inside it."""

    answer: str | None
    how: str
    text: str = ""
    span: tuple[int, int] | None = None


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


def final_box(text: str, max_chars: int, timeout_s: int = 3) -> tuple[str | None, str | None, tuple[int, int] | None]:
    """(answer, problem, span of the final box) from the boxes in text: no answer and no problem when
    there is no box at all.

    Empty boxes ("put it in \\boxed{}") hold no answer and are skipped; a box nested inside another
    belongs to it. Any other malformed box, or boxes that disagree, make the whole response unanswered.
    """
    opens = list(itertools.islice(_BOX_RE.finditer(text), MAX_BOXES + 1))
    if not opens:
        return None, None, None
    if len(opens) > MAX_BOXES:
        return None, "too many", None
    answers: list[tuple[str, tuple[int, int]]] = []
    covered_to = -1
    for m in opens:
        if m.start() < covered_to:
            continue
        content, end, problem = _read_box(text, m.end(), max_chars)
        if problem == "empty":
            continue
        if problem:
            return None, problem, None
        answers.append((content, (m.start(), end)))
        covered_to = end
    if not answers:
        return None, "empty", None
    final, span = answers[-1]
    # stops at the first disagreement, so hostile boxes cost at most about one sympy budget
    if any(not answers_equivalent(a, final, timeout_s, max_chars) for a, _ in answers[:-1]):
        return None, "several answers", None
    return final, None, span


def _mv_extract(text: str, timeout_s: int = 3) -> str | None:
    """The answer math-verify's own extraction finds in prose, as the text it matched (or None)."""
    from math_verify import parse  # heavy (sympy, antlr); imported on first use

    try:
        got = parse(text, parsing_timeout=alarm(timeout_s))
    except Exception:  # best effort: a parser failure means "nothing found"
        return None
    found = next((p for p in got if isinstance(p, str) and p.strip()), None)
    return found.strip() if found else None


def _is_math(segment: str) -> bool:
    """True when a stated answer is math (no prose words), so it can be graded as a whole, like a box."""
    bare = _TEXT_BLOCK_RE.sub(" ", normalize_answer(segment))
    return all(w.lower() in ("or", "and") for w in _WORD_RE.findall(bare))


def _anchored_answer(tail: str, max_chars: int, timeout_s: int) -> Extraction:
    """The answer stated after the last "answer is" / "answer:", read to the end of its sentence."""
    last = None
    for last in _ANSWER_RE.finditer(tail):
        pass
    if last is None:
        return Extraction(None, "none")
    seg = tail[last.end():last.end() + _SEGMENT_CHARS]
    start = last.end() + len(seg) - len(seg.lstrip(" \t\n*:"))
    seg = tail[start:start + _SEGMENT_CHARS]
    stop = _SENTENCE_END_RE.search(seg)
    seg = (seg[:stop.start()] if stop else seg).rstrip(" \t*")
    span = (start, start + len(seg))
    if not seg.strip():
        return Extraction(None, "none")
    words = number_in_words(seg)
    if words is not None:
        return Extraction(words, "answer_is", tail, span)
    is_math = _is_math(seg)
    parts = [p.strip() for p in _OR_RE.split(seg)[:5] if p.strip()]
    found = [a for a in (p if is_math else _mv_extract(p, timeout_s) for p in parts) if a]
    if not found:
        return Extraction(None, "none")
    if all(answers_equivalent(a, found[0], timeout_s, max_chars) for a in found[1:]):
        return Extraction(found[0][:max_chars], "answer_is", tail, span)  # one answer, maybe restated
    if is_math:
        return Extraction(seg.strip()[:max_chars], "answer_is", tail, span)  # "x = 5 or x = 6": the set
    return Extraction(None, "hedge")  # "the answer is 5, or maybe 6"


def _extract_plain(text: str, max_chars: int, timeout_s: int) -> Extraction:
    """Steps 1 to 5 of the module docstring over a cleaned text."""
    boxed, problem, span = final_box(text, max_chars, timeout_s)
    if problem:
        return Extraction(None, f"bad_box: {problem}")
    if boxed is not None:
        return Extraction(number_in_words(boxed) or boxed, "boxed", text, span)
    tail = normalize_text(text[-_TAIL_CHARS:])
    gsm = list(_GSM_RE.finditer(tail))
    if gsm:
        line = gsm[-1].group(1).strip().rstrip(".").strip()
        if line:
            return Extraction(number_in_words(line) or line[:max_chars], "gsm8k", tail, gsm[-1].span(1))
    anchored = _anchored_answer(tail, max_chars, timeout_s)
    if anchored.answer is not None or anchored.how == "hedge":
        return anchored
    answer = _mv_extract(tail[-_PARSE_CHARS:], timeout_s)
    if answer:
        return Extraction(answer[:max_chars], "math_verify", tail)
    nums = list(_NUM_RE.finditer(tail))
    if nums:
        return Extraction(nums[-1].group().replace(" ", "")[:max_chars], "last_number", tail, nums[-1].span())
    words = number_in_words(tail.strip())
    if words is not None:
        return Extraction(words, "last_number", tail, (0, len(tail)))
    return Extraction(None, "none")


def extract(text: str | None, max_chars: int = MAX_ANSWER_CHARS, timeout_s: int = 3) -> Extraction:
    """The answer of a response and where it was read (module docstring)."""
    if not text:
        return Extraction(None, "none")
    text = _FENCE_RE.sub("\n", clean_response(text))
    text = _DISOWNED_RE.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)], text)
    whole = _extract_plain(text, max_chars, timeout_s)
    if whole.how.startswith("bad_box") and whole.how != "bad_box: several answers":
        return whole
    last = None
    for last in _CORRECTION_RE.finditer(text[-_TAIL_CHARS:]):
        pass
    if last is None:
        return whole
    corrected = _extract_plain(text[-_TAIL_CHARS:][last.end():], max_chars, timeout_s)
    if corrected.answer is None or answers_equivalent(corrected.answer, whole.answer, timeout_s, max_chars):
        return whole
    return corrected  # "\boxed{19}. No, \boxed{20}": boxes that disagree across a correction are one answer


def extract_answer_with_method(text: str | None, max_chars: int = MAX_ANSWER_CHARS,
                               timeout_s: int = 3) -> tuple[str | None, str]:
    """(answer, how) in the order the module docstring gives.

    how: "boxed", "gsm8k", "answer_is", "math_verify", "last_number" or "none"; with answer None,
    also "bad_box: <why>" or "hedge" (the response gave an answer, but not one that can be graded).
    """
    found = extract(text, max_chars, timeout_s)
    return found.answer, found.how
