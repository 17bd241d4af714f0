"""rewards.math_guards: the pieces of the guards, with hand-written expectations."""

import pytest

from forkrl.rewards.math_guards import chain_answer, context_problem, decimal_comma, number_literal


@pytest.mark.parametrize("answer,want", [
    ("20,0", "20.0"), ("20,00", "20.00"), ("3,14", "3.14"), ("3,1416", "3.1416"), ("-2,5", "-2.5"),
    ("1,500", "1,500"), ("20, 0", "20, 0"), ("1,2,3", "1,2,3"), ("20", "20"),
])
def test_decimal_comma(answer, want):
    assert decimal_comma(answer) == want


@pytest.mark.parametrize("answer,want", [
    ("20", True), ("(20)", True), ("((20))", True), ("x = 20", True), ("-\\frac{3}{4}", True), ("(1,2)", False),
    ("17 + 3", False), ("\\frac{4}{2}", False), ("20,0", False),
])
def test_number_literal(answer, want):
    assert number_literal(answer) is want


@pytest.mark.parametrize("answer,want", [
    ("20 = 17 + 3", ("20", None)), ("17 + 3 = 20", ("20", None)), ("x = 13", ("13", None)),
    ("x = 19 = 20", ("20", "contradiction")), ("37 = 19+17", ("37", "contradiction")),
    ("19 + 17 =", ("", None)), ("x != 36", ("x != 36", None)), ("x = 35, y = 36", ("x = 35, y = 36", None)),
    ("\\frac{3}{4} = 0.75", ("0.75", None)),
])
def test_chain_answer(answer, want):
    assert chain_answer(answer, 1, 1000) == want


@pytest.mark.parametrize("text,span,answer,want", [
    ("What is 0 + 17?", None, "17", "unsimplified"),
    ("What is 17 + 0?", (8, 10), "17", "unsimplified"),  # the first operand, read where it stands
    ("17 + 3 = 20", None, "20", None),
    ("less than 21", None, "21", "hedge"),
    ("between 19 and 21", None, "19", "hedge"),
    ("20 or 21", None, "21", "hedge"),
    ("1/2, or 0.5", (0, 3), "1/2", None),  # the same number restated
    ("x = 19 = 20", None, "20", "contradiction"),
    ("The sum of 17 and 0", None, "17", "unsimplified"),
    ("no 20 here", None, "5", None),  # the answer is not written out: nothing to judge
])
def test_context_problem(text, span, answer, want):
    assert context_problem(text, span, answer) == want
