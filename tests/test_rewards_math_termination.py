"""Termination guards for the math grader: pathological responses must finish, and the regexes of the
math_* modules must stay linear.

This is no speed test. Each row is an input that once took seconds to minutes (regex backtracking, a
sympy power tower; found by an adversarial review of issue 24), scaled up. The whole table is scored in
a fresh subprocess that must finish within a generous bound (about 10x what it needs on a loaded
machine), so a regression to super-linear work fails it, and so does a wrong verdict.
"""

import json
import re
import subprocess
import sys
from re import _constants as C  # noqa: N812
from re import _parser as P  # noqa: N812

import pytest

from forkrl.rewards import (math_clean, math_equivalence, math_extract, math_guards, math_normalize,
                            math_verifier, math_words)

# (id, response (an expression, built in the subprocess), reward, reason) for gold 20
PATHOLOGICAL = [
    ("correction_spaces", "'20. Actually' + ' ' * 200 + 'x'", 1.0, "ok"),
    ("correction_spaces_10k", "'20. Actually' + ' ' * 10_000 + 'x'", 1.0, "ok"),
    ("trailing_letters", "'\\\\boxed{20 ' + 'a' * 38 + '1}'", 0.0, "unsimplified"),
    ("trailing_letters_900", "'\\\\boxed{20 ' + 'a' * 900 + '1}'", 0.0, "unsimplified"),
    ("span_tags", "'<span ' * 10_000", 0.0, "no_answer"),
    ("span_tags_50k", "'<span ' * 50_000", 0.0, "no_answer"),
    ("p_tags", "'<p ' * 20_000", 0.0, "no_answer"),
    ("font_tags", "'<font' * 10_000", 0.0, "no_answer"),
    # "not x" disowns x, not 20; padding is one space (rewards.math_clean step 0)
    ("disowned_spaces", "'not' + ' ' * 30_000 + 'x 20'", 1.0, "ok"),
    ("disowned_spaces_300k", "'not' + ' ' * 300_000 + 'x 20'", 1.0, "ok"),
    ("disowned_padded", "'It is not' + ' ' * 30_000 + '20'", 0.0, "no_answer"),
    ("tower_box", "'\\\\boxed{9^{9^{9^{9}}} = 20}'", 0.0, "contradiction"),
    ("tower_chain", "'\\\\boxed{9^{9^{9^{9}}} = 8^{8^{8^{8}}} = 7^{7^{7^{7}}} = 20}'", 0.0, "contradiction"),
    ("towers_or", "'The answer is $9^{9^{9^{9}}}$ or $8^{8^{8^{8}}}$ or $7^{7^{7^{7}}}$.'", 0.0, "unsimplified"),
    ("plus_200k", "'1+' * 100_000", 0.0, "unsimplified"),
    ("digits_1m", "'1' * 1_000_000", 0.0, "wrong_answer"),
    ("not_1m", "'not 5 ' * 150_000 + '20'", 1.0, "ok"),
    ("colour_lines", "'\\\\color{white} x\\n' * 20_000 + '20'", 1.0, "ok"),
    ("too_long", "'20 ' * 700_000", 0.0, "response_too_long: 2100000 chars"),
]

_SCRIPT = """
import json, sys
from forkrl.rewards.config import MathRewardConfig
from forkrl.rewards.math_verifier import score_math
from forkrl.rewards.types import Sample
out = []
for expr in json.loads(sys.argv[1]):
    s = score_math(Sample("u", "What is 17 + 3?", eval(expr), "20"), MathRewardConfig())
    out.append([s.reward, s.reason])
print(json.dumps(out))
"""


def test_pathological_inputs_terminate_with_their_verdicts():
    exprs = [row[1] for row in PATHOLOGICAL]
    done = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(exprs)], capture_output=True, text=True,
                          timeout=60, check=True)  # about 2 s of work, sympy import included; 10x + import slack
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert {row[0]: tuple(g) for row, g in zip(PATHOLOGICAL, got)} == {row[0]: (row[2], row[3]) for row in PATHOLOGICAL}


def _unbounded(op, av) -> bool:
    return op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[1] == C.MAXREPEAT  # possessive repeats never backtrack


def _children(op, av) -> list:
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
        return [av[2]]
    if op == C.SUBPATTERN:
        return [av[3]]
    if op == C.BRANCH:
        return list(av[1])
    if op in (C.ASSERT, C.ASSERT_NOT):
        return [av[1]]
    if op == C.ATOMIC_GROUP:
        return [av]
    return []


def _has_unbounded(seq) -> bool:
    return any(_unbounded(op, av) or any(_has_unbounded(c) for c in _children(op, av)) for op, av in seq)


def nested_unbounded(pattern: re.Pattern) -> bool:
    """True when an unbounded, backtracking repeat holds another one: "(a+)+", "(?:\\s*x)*"."""
    def walk(seq):
        return any((_unbounded(op, av) and _has_unbounded(av[2])) or any(walk(c) for c in _children(op, av))
                   for op, av in seq)
    return walk(P.parse(pattern.pattern, pattern.flags))


def _module_patterns():
    for mod in (math_clean, math_equivalence, math_extract, math_guards, math_normalize, math_verifier, math_words):
        for name, value in vars(mod).items():
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                item = item[0] if isinstance(item, tuple) else item
                if isinstance(item, re.Pattern):
                    yield f"{mod.__name__}.{name}", item


@pytest.mark.parametrize("pattern,nested", [
    (r"(a+)+b", True), (r"(?:\s*x)*", True), (r"(?:[A-Za-z]{2,}\.?\s*)+", True),
    (r"(?:[A-Za-z]{2,}+\.?+\s*+)++", False), (r"\s{0,5}(?:ab)+", False), (r"(?:a{1,5})+", False),
])
def test_nested_unbounded_detector(pattern, nested):
    assert nested_unbounded(re.compile(pattern)) is nested


def test_no_module_regex_nests_unbounded_repeats():
    names = [name for name, pattern in _module_patterns()]
    assert len(names) > 60  # the walk really finds the modules' patterns
    assert [name for name, pattern in _module_patterns() if nested_unbounded(pattern)] == []


def test_non_str_response_scores_zero_with_its_type():
    from forkrl.rewards.config import MathRewardConfig
    from forkrl.rewards.types import Sample

    for response, kind in ((5, "int"), (None, "NoneType"), (b"20", "bytes"), (["20"], "list")):
        s = math_verifier.score_math(Sample("u", "p", response, "20"), MathRewardConfig())
        assert (s.reward, s.correct, s.reason, s.extracted) == (0.0, False, f"bad_response: {kind}, not str", None)
