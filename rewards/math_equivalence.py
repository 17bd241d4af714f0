"""Whether two final answers mean the same: math-verify (sympy), both directions, after one normalisation.

Everything that reaches sympy is length-capped first, because sympy can hang on huge or pathological
input, and power towers are never evaluated. math-verify's own SIGALRM budget is used whenever we run
on the main thread (signals work nowhere else; off it, the pool's per-sample timeout kills a stuck worker).
"""

from __future__ import annotations

import functools
import re
import threading
import time

from .math_normalize import normalize_answer, squash

MAX_ANSWER_CHARS = 1000
_TOWER_RE = re.compile(r"\^\s{0,5}+(?:\{[^{}^]{0,50}+\^|\(?[\d.]{0,20}+\)?\s{0,5}+\^|\{?\s{0,5}+\d{4})")
"""A power tower ("9^{9^{9}}", "9^9^9") or an exponent of four digits or more: sympy can spend its whole
budget on one, so such an answer is compared as a plain string only (it is no number literal anyway)."""


def alarm(timeout_s: int) -> int | None:
    """math-verify's SIGALRM budget where signals work (the main thread), else none."""
    return timeout_s if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=4096)
def _parse(ans: str, timeout_s: int) -> tuple:
    from math_verify import parse  # heavy (sympy, antlr); imported on first use

    body = ans.strip()
    if not (body.startswith("$") and body.endswith("$")):
        body = f"${body}$"  # a bare "1/2" or "\{1,2\}" parses as LaTeX only inside math mode
    parsed = parse(body, parsing_timeout=alarm(timeout_s))
    return tuple(parsed) if parsed else tuple(parse(ans, parsing_timeout=alarm(timeout_s)))


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
    if squash(a) == squash(b):
        return squash(a) != ""
    if len(a) > max_chars or len(b) > max_chars or _TOWER_RE.search(a) or _TOWER_RE.search(b):
        return False
    a, b = sorted((normalize_answer(a), normalize_answer(b)))
    if squash(a) == squash(b):
        return squash(a) != ""
    try:
        from math_verify import verify

        pa, pb = _parse(a, timeout_s), _parse(b, timeout_s)
        if not pa or not pb:
            return False
        t, t0 = alarm(timeout_s), time.monotonic()
        if verify(list(pa), list(pb), timeout_seconds=t):
            return True
        if time.monotonic() - t0 >= timeout_s:  # sympy spent the budget; the other direction would too
            return False
        return bool(verify(list(pb), list(pa), timeout_seconds=t))
    except Exception:  # math-verify is best effort; a parse failure means "not shown equal"
        return False
