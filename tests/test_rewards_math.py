"""Math answer extraction and equivalence: a table of equal / not-equal pairs, adversarial inputs."""

import threading
import time

import pytest

from forkrl.rewards.config import MathRewardConfig
from forkrl.rewards.math_verifier import answers_equivalent, extract_answer, score_math
from forkrl.rewards.types import Sample

MB = "x" * (1 << 20)

EQUAL = [
    ("1/2", "0.5"), ("\\frac{1}{2}", "0.5"), ("\\frac12", "1/2"), ("\\dfrac{3}{4}", "0.75"), ("\\tfrac{3}{4}", "3/4"),
    ("2", "2.0"), ("-3", "-3.00"), ("1,000", "1000"), ("1000", "1{,}000"), ("0.333333", "0.3333333"),
    ("\\sqrt{8}", "2\\sqrt{2}"), ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"), ("\\pi", "\\pi"), ("2\\pi", "\\pi \\cdot 2"),
    ("x^2+2x+1", "(x+1)^2"), ("\\{1,2\\}", "\\{2,1\\}"), ("\\{1, 2, 3\\}", "\\{3,2,1\\}"), ("[0,1)", "[0, 1)"),
    ("(1, 2]", "(1,2]"), ("(-\\infty, 0)", "(-\\infty,0)"), ("5 \\text{ cm}", "5"), ("10\\text{ apples}", "10"),
    ("45^\\circ", "45"), ("x=3", "3"), ("\\$5", "5"), ("e^{0}", "1"), ("2^{10}", "1024"), ("\\frac{6}{4}", "\\frac{3}{2}"),
    ("1.5", "\\frac{3}{2}"), ("-\\frac{1}{2}", "-0.5"), ("3", "\\boxed{3}"), ("\\left(1,2\\right)", "(1,2)"),
    ("10^3", "1000"), ("\\text{(B)}", "\\text{(B)}"), ("12", " 12 "),
]
NOT_EQUAL = [
    ("1/2", "0.51"), ("1", "2"), ("-1", "1"), ("\\frac{1}{3}", "0.3"), ("\\{1,2\\}", "\\{1,3\\}"), ("[0,1)", "[0,1]"),
    ("(0,1)", "[0,1]"), ("\\sqrt{2}", "1.41"), ("x^2", "x^3"), ("2\\pi", "\\pi"), ("1000", "100"), ("3", "33"),
    ("0", "0.001"), ("\\infty", "-\\infty"), ("5", "five hundred"), ("1,2", "1,3"),
    # adversarial
    ("", ""), ("", "1"), ("1", ""), (None, "1"), ("{", "}"), ("\\frac{1}{", "0.5"), ("\\boxed{", "1"),
    ("1" * 5000, "1" * 4999), (MB, MB + "1"), ("\\frac{1}{2}" * 300, "0.5"), ("((((((((((1", "1"),
]


@pytest.mark.parametrize("a,b", EQUAL)
def test_equal_pairs(a, b):
    assert answers_equivalent(a, b) and answers_equivalent(b, a)


@pytest.mark.parametrize("a,b", NOT_EQUAL)
def test_not_equal_pairs(a, b):
    t0 = time.monotonic()
    assert not answers_equivalent(a, b)
    assert time.monotonic() - t0 < 5


@pytest.fixture(scope="module")
def warm_math_verify():
    """The first parse imports sympy and antlr (seconds); the timing asserts below are about extraction."""
    answers_equivalent("1/2", "0.5")


@pytest.mark.parametrize("text,want", [
    ("so the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("\\boxed{1} then \\boxed{2}", None),  # two different boxed answers: a hedge, not "the last one"
    ("\\boxed{2} so \\boxed{2}", "2"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are not grouping
    ("\\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}"),
    ("early \\boxed{7} late unbalanced \\boxed{8", None),  # a broken box is never skipped for an earlier one
    ("$\\boxed 5$", "5"),
    ("\\fbox{9}", "9"),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
    ("#### 1,234\n", "1,234"),
    ("I think 3 then 4.5 apples", "4.5"),
    ("so it is -12", "-12"),
    ("no digits here", None),
    ("", None),
    (None, None),
    ("{" * 100_000, None),
    ("\\boxed{" * 30_000, None),
    (MB + " 42", "42"),
])
def test_extract_answer(text, want, warm_math_verify):
    t0 = time.monotonic()
    assert extract_answer(text) == want
    assert time.monotonic() - t0 < 1.0


def _sample(response, answer="0.5"):
    return Sample("u", "p", response, answer)


def test_score_math_reward_and_format():
    plain = MathRewardConfig()
    fmt = MathRewardConfig(boxed_bonus=0.1, unboxed_penalty=0.2)
    s = score_math(_sample("\\boxed{\\frac{1}{2}}"), plain)
    assert (s.reward, s.correct, s.reason, s.extracted) == (1.0, True, "ok", "\\frac{1}{2}")
    assert score_math(_sample("\\boxed{\\frac{1}{2}}"), fmt).reward == 1.0  # clamped: rewards stay in [0, 1]
    assert score_math(_sample("it is 0.5"), fmt).reward == pytest.approx(0.8)  # right, but unboxed
    s = score_math(_sample("\\boxed{3}"), fmt)
    assert (s.reward, s.correct, s.reason) == (pytest.approx(0.1), False, "wrong_answer")
    s = score_math(_sample("I give up"), fmt)
    assert (s.reward, s.reason, s.extracted) == (0.0, "no_answer", None)  # clamped, not -0.2
    assert score_math(_sample("#### 2", answer="\\boxed{2}"), plain).correct  # gold stored boxed


def test_answers_equivalent_off_main_thread():
    """Ray threaded actors and clustering helpers call it off the main thread, where SIGALRM is unusable."""
    out = []
    t = threading.Thread(target=lambda: out.append((answers_equivalent("1/2", "0.5"), answers_equivalent("1", "2"))))
    t.start()
    t.join()
    assert out == [(True, False)]
