"""The eval split is held out from training by construction, for the generator and file sources.

Issue 11: every eval prompt of the default job used to be a training prompt. These tests measure the
overlap by normalised prompt text (what the issue measured) and, for the generator, also up to the
order of operands ("5 + 3" is not held out if "3 + 5" is trained on).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from forkrl.orchestrator.data import (
    ArithmeticData,
    DataError,
    JsonlData,
    generate_arithmetic,
    load_data,
    normalised_prompt,
    parse_data_config,
    problem_key,
    problem_space,
)
from pydantic import ValidationError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _key(row) -> str:
    """Canonical problem of a generated row, parsed back from its expression text."""
    toks = row.meta["expr"].split()
    return problem_key([int(t) for t in toks[0::2]], toks[1::2])


def _assert_held_out(data, num_eval: int) -> None:
    assert data.overlap() == 0
    assert not {_key(r) for r in data.eval} & {_key(r) for r in data.train}
    assert len(data.eval) == num_eval
    assert len({normalised_prompt(r.messages) for r in data.eval}) == num_eval  # distinct prompts
    assert len({_key(r) for r in data.eval}) == num_eval  # and distinct problems up to operand order
    assert data.reports[-1].splits[-1].in_train == 0


def test_default_recipe_eval_is_held_out():
    section = yaml.safe_load((RECIPES / "default.yaml").read_text())["data"]
    cfg = parse_data_config(section)
    data = load_data(cfg)
    _assert_held_out(data, cfg.num_eval)
    # independently of problem_key: no eval "a + b" is trained on as "b + a" either
    trained = {r.meta["expr"] for r in data.train}
    assert not [r for r in data.eval if " + ".join(r.meta["expr"].split(" + ")[::-1]) in trained]
    # a + b with a, b in 0..19: 20 * 20 = 400 prompts, 20 * 21 / 2 = 210 problems up to operand order
    space = problem_space(cfg)
    assert (space.total, space.prompts) == (210, 400)
    assert (space.held_out, space.held_out_prompts) == (68, 130)  # eval_fraction 0.35, split_seed 0
    # the log lines carry the split sizes (problems and prompts) and the overlap, written out
    train_line, eval_line = (r.summary() for r in data.reports)
    assert train_line == ("arithmetic[train]: 2000 rows ok, 0 skipped; train split: 2000 rows, "
                          "142 distinct problems (of 142 possible), 270 distinct prompts")
    assert eval_line == ("arithmetic[eval]: 64 rows ok, 0 skipped; eval split: 64 rows, "
                         "64 distinct problems (of 68 possible), 64 distinct prompts, 0 also in train")


@pytest.mark.parametrize("settings", [
    dict(),                                                                # the default task
    dict(operations=["+", "-", "*"], max_digits=1, num_operands=3, seed=3, num_train=500, num_eval=40),
    dict(operations=["-"], max_digits=1, max_value=9, num_train=300, num_eval=10, split_seed=5),
    dict(operations=["*"], max_digits=1, num_train=200, num_eval=20, eval_fraction=0.5),
    dict(operations=["+", "-"], num_operands=2, max_operands=3, num_train=500, num_eval=64),  # mixed lengths
    # too large to enumerate: the split is still disjoint, checked only by retries
    dict(operations=["+", "*"], min_digits=2, max_digits=3, max_value=None, num_operands=3,
         num_train=400, num_eval=100),
])
def test_generator_split_disjoint(settings):
    cfg = ArithmeticData(**settings)
    _assert_held_out(load_data(cfg), cfg.num_eval)


def test_tiny_space_eval_takes_every_held_out_problem_once():
    """a, b in 0..2 with '+': 9 prompts, 6 problems up to operand order. split_seed 0 at
    eval_fraction 0.5 holds out {0+0, 1+1, 1+2}: 4 prompts ("1 + 2" and "2 + 1"), but 3 problems,
    so the eval split has room for 3 rows, one per problem, never both orders of 1 + 2."""
    base = dict(max_digits=1, max_value=2, eval_fraction=0.5, num_train=50)
    space = problem_space(ArithmeticData(**base, num_eval=0))
    assert (space.total, space.held_out, space.prompts, space.held_out_prompts) == (6, 3, 9, 4)
    assert (space.train, space.train_prompts) == (3, 5)
    cfg = ArithmeticData(**base, num_eval=3)
    data = load_data(cfg)
    _assert_held_out(data, 3)
    assert sorted(_key(r) for r in data.eval) == ["+0 +0", "+1 +1", "+1 +2"]
    assert {r.meta["expr"] for r in data.train} == {"0 + 1", "1 + 0", "0 + 2", "2 + 0", "2 + 2"}
    assert data.reports[1].splits[0].__str__() == (
        "eval split: 3 rows, 3 distinct problems (of 3 possible), 3 distinct prompts, 0 also in train")
    assert data.reports[0].splits[0].__str__() == (
        "train split: 50 rows, 3 distinct problems (of 3 possible), 5 distinct prompts")
    with pytest.raises(ValidationError, match=r"num_eval=4 asks for more distinct eval problems than "
                       r"the 3 that eval_fraction=0.5 holds out of this task's 6 \(up to operand order"):
        ArithmeticData(**base, num_eval=4)
    with pytest.raises(DataError, match="num_eval=4 asks for more"):
        generate_arithmetic(cfg, "eval", 4)


def test_eval_problems_are_distinct_up_to_operand_order_where_prompts_repeat_problems():
    """The old default job drew 64 eval prompts that were 40 problems. Here a + b over 0..19 with
    eval_fraction 0.5 (100 held-out problems, 192 prompts): 100 eval rows are the 100 problems."""
    cfg = ArithmeticData(eval_fraction=0.5, num_eval=100, num_train=10)
    assert (problem_space(cfg).held_out, problem_space(cfg).held_out_prompts) == (100, 192)
    rows = generate_arithmetic(cfg, "eval", 100)
    assert len({_key(r) for r in rows}) == 100
    assert all(r.meta["problem"] == _key(r) for r in rows)


def test_split_is_fixed_by_split_seed_not_by_seed():
    """Eval problems never change sides when the training draw (seed) or sizes change."""
    held = set()
    train = set()
    for seed in range(4):
        d = load_data(ArithmeticData(seed=seed, num_train=300 + 100 * seed, num_eval=20 + 10 * seed))
        held |= {_key(r) for r in d.eval}
        train |= {_key(r) for r in d.train}
    assert held and not held & train
    other = load_data(ArithmeticData(split_seed=1))
    assert {_key(r) for r in other.eval} != {_key(r) for r in load_data(ArithmeticData()).eval}


def test_split_config_errors():
    with pytest.raises(ValidationError, match="num_eval=8 needs eval_fraction > 0"):
        ArithmeticData(num_eval=8, eval_fraction=0.0)
    assert problem_space(ArithmeticData(num_eval=0, eval_fraction=0.0)).held_out == 0
    with pytest.raises(ValidationError, match="holds out all 1 problems.*none is left to train on"):
        ArithmeticData(max_digits=1, max_value=0, num_eval=0, eval_fraction=0.99, split_seed=0)


def _write(path, prompts, start=0):
    path.write_text("".join(json.dumps({"prompt": p, "answer": str(start + i)}) + "\n"
                            for i, p in enumerate(prompts)))
    return path


NEAR_DUPLICATES = ["What is 1+1?", "what is 1+1?", "  What  is\t1+1? ", "WHAT IS 1+1?",
                   "What is 2+2?", "What is 2+2?", "What is 3+3?", "What is 1 + 1?"]


def test_jsonl_dedupes_near_duplicates_before_holdout(tmp_path):
    path = _write(tmp_path / "d.jsonl", NEAR_DUPLICATES + [f"q{i}" for i in range(40)])
    d = load_data(JsonlData(path=path))
    rep = d.reports[0]
    assert rep.reasons["duplicate prompt"] == 4
    assert rep.examples == ["row 2: duplicate prompt (as row 1)", "row 3: duplicate prompt (as row 1)",
                            "row 4: duplicate prompt (as row 1)", "row 6: duplicate prompt (as row 5)"]
    assert len(d.train) == 44  # "1 + 1" is spaced differently from "1+1": a different prompt
    for split_seed in range(20):  # before dedupe, copies of a row fell on both sides for some seeds
        h = load_data(JsonlData(path=path, eval_fraction=0.25, split_seed=split_seed))
        assert h.overlap() == 0 and len(h.eval) == 11 and len(h.train) == 33
        assert h.reports[0].splits[-1].in_train == 0


def test_jsonl_eval_file_is_kept_and_training_decontaminated(tmp_path):
    train = _write(tmp_path / "train.jsonl", NEAR_DUPLICATES + ["q1", "Q2"])
    ev = _write(tmp_path / "eval.jsonl", ["what IS 2+2?", "q2", "q3", "Q3 "], start=100)
    d = load_data(JsonlData(path=train, eval_path=ev))
    assert d.overlap() == 0
    assert [r.answer for r in d.eval] == ["100", "101", "102"]
    assert d.reports[1].examples == ["row 4: duplicate prompt (as row 3)"]
    t = d.reports[0]
    assert t.reasons == {"duplicate prompt": 3, "prompt in eval split": 3}  # 2+2 twice, Q2
    assert [r.messages[0]["content"].split("\n")[0] for r in d.train] == [
        "What is 1+1?", "What is 3+3?", "What is 1 + 1?", "q1"]
    assert t.summary() == (
        f"{train}: 4 rows ok, 6 skipped (duplicate prompt: 3, prompt in eval split: 3); "
        "train split: 4 rows, 4 distinct problems, 4 distinct prompts; e.g. row 2: duplicate prompt (as row 1); "
        "row 3: duplicate prompt (as row 1); row 4: duplicate prompt (as row 1); "
        "row 5: prompt in eval split (eval row 1); row 6: prompt in eval split (eval row 1)")
    assert d.reports[1].summary().endswith("eval split: 3 rows, 3 distinct problems, 3 distinct prompts, 0 also in train; "
                                           "e.g. row 4: duplicate prompt (as row 3)")


def test_question_template_without_expr_is_refused_naming_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"question_template must contain '\{expr\}'"):
        ArithmeticData(question_template="What is the sum?")
    assert ArithmeticData(question_template="Compute {expr}.").question_template == "Compute {expr}."
