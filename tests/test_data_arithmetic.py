"""orchestrator.data.arithmetic: the generator's problems, answers, operand ranges and expression lengths."""

from __future__ import annotations

import pytest
from forkrl.orchestrator.data import (
    ArithmeticData,
    generate_arithmetic,
    load_data,
    problem_space,
)
from pydantic import ValidationError


def _check_arith(rows, ops, digits):
    for r in rows:
        expr = r.meta["expr"]
        assert eval(expr) == int(r.answer), expr  # test-only: expr is digits and + - * only
        toks = expr.split()
        assert all(op in ops for op in toks[1::2])
        assert all(len(t) in digits for t in toks[0::2])


def test_arithmetic_generator_deterministic_and_correct():
    cfg = ArithmeticData(operations=["+", "-", "*"], min_digits=1, max_digits=2, num_operands=3,
                         seed=7, num_train=300, num_eval=50)
    a, b = load_data(cfg), load_data(cfg)
    assert [(r.uid, r.messages, r.answer) for r in a.train] == [(r.uid, r.messages, r.answer) for r in b.train]
    assert len(a.train) == 300 and len(a.eval) == 50
    assert a.train[0].uid == "arith-train-0" and a.eval[0].uid == "arith-eval-0"
    _check_arith(a.train + a.eval, {"+", "-", "*"}, {1, 2})
    assert all(int(r.answer) >= 0 for r in a.train)  # allow_negative=False
    c = load_data(cfg.model_copy(update={"seed": 8}))
    assert [r.answer for r in c.train] != [r.answer for r in a.train]
    # default task: the question goes through the prompt template into one user message
    row = generate_arithmetic(ArithmeticData(), "train", 1)[0]
    assert row.task == "math" and row.messages[-1]["role"] == "user"
    assert row.meta["expr"] in row.messages[-1]["content"]


def test_arithmetic_max_value():
    cfg = ArithmeticData(min_digits=1, max_digits=2, max_value=19, num_train=200, num_eval=0)
    ops = [int(t) for r in load_data(cfg).train for t in r.meta["expr"].split()[0::2]]
    assert max(ops) <= 19 and any(x >= 10 for x in ops) and any(x < 10 for x in ops)
    with pytest.raises(ValidationError, match="max_value"):
        ArithmeticData(min_digits=1, max_digits=2, max_value=5)


def test_arithmetic_defaults_are_the_calibrated_task():
    cfg = ArithmeticData()
    assert (cfg.operations, cfg.min_digits, cfg.max_digits, cfg.max_value, cfg.num_operands) == (
        ["+"], 1, 2, 19, 2)
    row = generate_arithmetic(cfg, "train", 1)[0]
    assert row.messages == [{"role": "user", "content": f"What is {row.meta['expr']}?\n"
                             "Put your final answer in \\boxed{}."}]


def test_max_operands_mixes_expression_lengths():
    """Operands 0..2, '+', 2 or 3 operands: 3^2 + 3^3 = 36 distinct prompts (all non-negative), and
    as problems up to operand order the multisets of 2 or 3 of 3 values: C(4,2) + C(5,3) = 6 + 10 = 16."""
    cfg = ArithmeticData(max_digits=1, max_value=2, num_operands=2, max_operands=3, num_train=200,
                         num_eval=0, eval_fraction=0.0)
    assert (problem_space(cfg).prompts, problem_space(cfg).total) == (36, 16)
    rows = load_data(cfg).train
    lengths = {len(r.meta["expr"].split()[0::2]) for r in rows}
    assert lengths == {2, 3}
    _check_arith(rows, {"+"}, {1})
    # max_operands == num_operands is the fixed-length task, draw for draw
    same = ArithmeticData(max_operands=2, num_train=50)
    assert [r.meta["expr"] for r in generate_arithmetic(same, "train", 50)] == \
        [r.meta["expr"] for r in generate_arithmetic(ArithmeticData(num_train=50), "train", 50)]
    with pytest.raises(ValidationError, match=r"max_operands \(2\) < num_operands \(3\)"):
        ArithmeticData(num_operands=3, max_operands=2)
