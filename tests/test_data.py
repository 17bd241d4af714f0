"""orchestrator.data: config validation, loaders with bad-row reports, generator, PromptStream."""

from __future__ import annotations

import dataclasses
import json

import pytest
from pydantic import ValidationError

from forkrl.orchestrator.data import (
    ArithmeticData,
    DataError,
    HFDatasetData,
    JsonlData,
    ParquetData,
    PromptStream,
    generate_arithmetic,
    load_data,
    parse_data_config,
    problem_space,
)

GOOD = [
    {"prompt": "What is 1 + 1?", "answer": "2"},
    {"prompt": "What is 2 + 3?", "answer": 5, "task": "math"},
    {"prompt": [{"role": "user", "content": "Say hi"}], "answer": "hi", "task": "echo"},
    {"prompt": "What is 0.5 * 2?", "answer": 1.0},
]


def _write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_bad_rows_skipped_and_counted(tmp_path):
    lines = [
        json.dumps(GOOD[0]),                                 # row 1 ok
        json.dumps({"prompt": "no answer"}),                 # row 2 missing answer
        "{not json",                                         # row 3 unparsable
        "",                                                  # blank: not a row
        json.dumps({"prompt": "   ", "answer": "1"}),        # row 5 empty prompt
        json.dumps({"prompt": "x", "answer": ""}),           # row 6 empty answer
        json.dumps({"prompt": 7, "answer": "1"}),            # row 7 wrong prompt type
        json.dumps({"prompt": "x", "answer": [1]}),          # row 8 wrong answer type
        json.dumps({"prompt": "x", "answer": True}),         # row 9 bool answer
        json.dumps([1, 2]),                                  # row 10 not an object
        json.dumps({"prompt": [{"role": "bot", "content": "x"}], "answer": "1"}),  # row 11
        json.dumps(GOOD[1]),                                 # row 12 ok
        json.dumps({"answer": "3"}),                         # row 13 missing prompt
    ]
    cfg = JsonlData(path=_write_jsonl(tmp_path / "d.jsonl", lines))
    data = load_data(cfg)
    (rep,) = data.reports
    assert [r.uid for r in data.train] == ["train-1", "train-12"]
    assert rep.num_ok == 2 and rep.num_skipped == 10
    assert rep.reasons["missing 'answer'"] == 1
    assert rep.reasons["missing 'prompt'"] == 1
    assert rep.reasons["unparsable line"] == 1
    assert rep.reasons["empty prompt"] == 1
    assert rep.reasons["empty answer"] == 1
    assert rep.examples[0] == "row 2: missing 'answer'"
    assert rep.examples[1].startswith("row 3: unparsable line")
    assert len(rep.examples) == 5
    summary = rep.summary()
    assert "2 rows ok, 10 skipped" in summary and "row 2: missing 'answer'" in summary


def test_jsonl_rows_formatting(tmp_path):
    cfg = JsonlData(path=_write_jsonl(tmp_path / "d.jsonl", [json.dumps(r) for r in GOOD]),
                    task_key="task", system_prompt="Be brief.")
    rows = load_data(cfg).train
    assert rows[0].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 1 + 1?\nPut your final answer in \\boxed{}."},
    ]
    assert rows[0].answer == "2" and rows[0].task == "math"
    assert rows[1].answer == "5"
    # chat-message prompts are kept as given (no template), the system prompt is still added
    assert rows[2].messages[1] == {"role": "user", "content": "Say hi"} and rows[2].task == "echo"
    assert rows[3].answer == "1.0"


def test_jsonl_eval_file_and_holdout(tmp_path):
    lines = [json.dumps({"prompt": f"q{i}", "answer": str(i), "id": f"u{i}"}) for i in range(20)]
    train = _write_jsonl(tmp_path / "train.jsonl", lines)
    ev = _write_jsonl(tmp_path / "eval.jsonl", lines[:3] + ["oops"])
    d = load_data(JsonlData(path=train, eval_path=ev))
    # the eval file is the fixed reference: training rows repeating its prompts are dropped
    assert len(d.train) == 17 and len(d.eval) == 3 and d.overlap() == 0
    assert d.reports[0].reasons["prompt in eval split"] == 3
    assert d.reports[0].examples[0] == "row 1: prompt in eval split (eval row 1)"
    assert d.reports[1].num_skipped == 1 and d.reports[1].examples[0].startswith("row 4:")
    assert d.eval[0].uid == "eval-1"

    h1 = load_data(JsonlData(path=train, eval_fraction=0.25, uid_key="id", split_seed=3))
    h2 = load_data(JsonlData(path=train, eval_fraction=0.25, uid_key="id", split_seed=3))
    assert len(h1.eval) == 5 and len(h1.train) == 15
    assert [r.uid for r in h1.eval] == [r.uid for r in h2.eval]
    assert not {r.uid for r in h1.eval} & {r.uid for r in h1.train}

    with pytest.raises(ValidationError, match="not both"):
        JsonlData(path=train, eval_path=ev, eval_fraction=0.1)


def test_duplicate_uid_and_max_rows(tmp_path):
    lines = [json.dumps({"prompt": f"q{i}", "answer": "1", "id": i % 3}) for i in range(6)]
    d = load_data(JsonlData(path=_write_jsonl(tmp_path / "d.jsonl", lines), uid_key="id"))
    assert [r.uid for r in d.train] == ["0", "1", "2"]
    assert d.reports[0].reasons["duplicate uid"] == 3
    d = load_data(JsonlData(path=tmp_path / "d.jsonl", max_rows=2))
    assert len(d.train) == 2


def test_non_finite_and_missing_answers_skipped(tmp_path):
    lines = [
        '{"prompt": "q1", "answer": NaN}',                   # row 1: JSON NaN literal -> float nan
        '{"prompt": "q2", "answer": Infinity}',              # row 2
        '{"prompt": "q3", "answer": -Infinity}',             # row 3
        json.dumps({"prompt": "q4", "answer": "nan"}),       # row 4: strings float() reads as such
        json.dumps({"prompt": "q5", "answer": " inf "}),     # row 5
        json.dumps({"prompt": "q6", "answer": "-Infinity"}),  # row 6
        json.dumps({"prompt": "q7", "answer": None}),        # row 7: null is missing, not "None"
        json.dumps({"prompt": "q8"}),                        # row 8: absent
        json.dumps({"prompt": "q9", "answer": "\\infty"}),   # row 9: LaTeX infinity is an answer
        json.dumps({"prompt": "q10", "answer": "1e999"}),    # row 10: a finite number, kept as text
        json.dumps({"prompt": "q11", "answer": 2.5}),        # row 11
    ]
    d = load_data(JsonlData(path=_write_jsonl(tmp_path / "d.jsonl", lines)))
    (rep,) = d.reports
    assert [(r.meta["row"], r.answer) for r in d.train] == [(9, "\\infty"), (10, "1e999"), (11, "2.5")]
    assert "None" not in [r.answer for r in d.train]
    assert rep.num_skipped == 8
    assert rep.reasons == {"answer is not finite": 6, "missing 'answer'": 2}
    assert rep.examples == [
        "row 1: answer is not finite (nan)",
        "row 2: answer is not finite (inf)",
        "row 3: answer is not finite (-inf)",
        "row 4: answer is not finite ('nan')",
        "row 5: answer is not finite (' inf ')",
    ]
    rest = load_data(JsonlData(path=_write_jsonl(tmp_path / "e.jsonl", lines[5:9]))).reports[0]
    assert rest.examples == ["row 1: answer is not finite ('-Infinity')", "row 2: missing 'answer'",
                             "row 3: missing 'answer'"]


def test_parquet_nan_and_null_answers_skipped(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": ["a?", "b?", "c?", "d?"], "answer": [1.5, float("nan"), None, float("inf")]})
    pq.write_table(table, tmp_path / "d.parquet")
    d = load_data(ParquetData(path=tmp_path / "d.parquet"))
    assert [r.answer for r in d.train] == ["1.5"]
    assert d.reports[0].examples == ["row 2: answer is not finite (nan)", "row 3: missing 'answer'",
                                     "row 4: answer is not finite (inf)"]


def test_no_usable_rows_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="no usable rows.*missing 'answer'"):
        load_data(JsonlData(path=_write_jsonl(tmp_path / "d.jsonl", ['{"prompt": "x"}'])))
    with pytest.raises(DataError, match="does not exist"):
        load_data(JsonlData(path=tmp_path / "nope.jsonl"))


def test_parquet_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"question": ["a?", "b?", None, "d?"], "sol": ["1", "2", "3", None]})
    pq.write_table(table, tmp_path / "d.parquet")
    d = load_data(ParquetData(path=tmp_path / "d.parquet", prompt_key="question", answer_key="sol"))
    assert [r.answer for r in d.train] == ["1", "2"]
    assert d.reports[0].examples == ["row 3: missing 'question'", "row 4: missing 'sol'"]


def test_hf_dataset_sources(tmp_path):
    import datasets

    rows = {"prompt": ["a?", "b?", "c?", ""], "answer": ["1", "2", "3", "4"]}
    test = {"prompt": ["x?", "B?"], "answer": ["9", "2"]}  # "B?" is training's "b?" up to case
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                               "test": datasets.Dataset.from_dict(test)})
    dd.save_to_disk(str(tmp_path / "dd"))
    d = load_data(HFDatasetData(path=str(tmp_path / "dd"), eval_split="test"))
    assert len(d.train) == 2 and len(d.eval) == 2 and d.overlap() == 0
    assert d.reports[0].reasons["empty prompt"] == 1
    assert d.reports[0].reasons["prompt in eval split"] == 1

    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "single"))
    assert len(load_data(HFDatasetData(path=str(tmp_path / "single"))).train) == 3

    jl = _write_jsonl(tmp_path / "x.jsonl", [json.dumps(r) for r in GOOD[:2]])
    d = load_data(HFDatasetData(path=str(jl), builder="json"))
    assert [r.answer for r in d.train] == ["2", "5"]

    with pytest.raises(DataError, match="no split 'nope'"):
        load_data(HFDatasetData(path=str(tmp_path / "dd"), eval_split="nope"))


def test_config_union_and_validation():
    cfg = parse_data_config({"type": "jsonl", "path": "x.jsonl"})
    assert isinstance(cfg, JsonlData)
    assert isinstance(parse_data_config({"type": "arithmetic"}), ArithmeticData)
    with pytest.raises(ValidationError, match="extra"):
        parse_data_config({"type": "arithmetic", "bogus": 1})
    with pytest.raises(ValidationError):
        parse_data_config({"type": "csv", "path": "x"})
    with pytest.raises(ValidationError, match="min_digits"):
        ArithmeticData(min_digits=3, max_digits=2)
    with pytest.raises(ValidationError, match="prompt"):
        ArithmeticData(prompt_template="no placeholder")
    for model in (ArithmeticData, JsonlData, ParquetData, HFDatasetData):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


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
    """Operands 0..2, '+', 2 or 3 operands: 3^2 + 3^3 = 36 distinct prompts (all non-negative)."""
    cfg = ArithmeticData(max_digits=1, max_value=2, num_operands=2, max_operands=3, num_train=200,
                         num_eval=0, eval_fraction=0.0)
    assert problem_space(cfg).total == 36
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


def _rows(n):
    cfg = ArithmeticData(num_train=n, num_eval=0)
    return generate_arithmetic(cfg, "train", n)


def test_stream_epochs_are_permutations_and_seeded():
    rows = _rows(10)
    s = PromptStream(rows, batch_size=4, seed=1)
    seen = [r.uid for _ in range(5) for r in s.next_batch()]  # 20 = two full epochs
    assert sorted(seen[:10]) == sorted(r.uid for r in rows) == sorted(seen[10:])
    assert seen[:10] != seen[10:]  # each epoch reshuffled
    assert s.epoch == 1 and s.position == 10
    s2 = PromptStream(rows, batch_size=4, seed=1)
    assert [r.uid for _ in range(5) for r in s2.next_batch()] == seen
    s3 = PromptStream(rows, batch_size=4, seed=2)
    assert [r.uid for _ in range(5) for r in s3.next_batch()] != seen


def test_stream_resume_is_exact():
    rows = _rows(13)
    ref = PromptStream(rows, batch_size=5, seed=3)
    ref_uids = [[r.uid for r in ref.next_batch()] for _ in range(12)]
    s = PromptStream(rows, batch_size=5, seed=3)
    for _ in range(7):
        s.next_batch()
    state = json.loads(json.dumps(s.state_dict()))  # survives a JSON checkpoint
    resumed = PromptStream(rows, batch_size=5, seed=3)
    resumed.load_state_dict(state)
    assert [[r.uid for r in resumed.next_batch()] for _ in range(5)] == ref_uids[7:]
    with pytest.raises(ValueError, match="data changed"):
        PromptStream(rows[:-1], batch_size=5, seed=3).load_state_dict(state)
    swapped = rows[:4] + [dataclasses.replace(rows[4], answer="999")] + rows[5:]  # same count, other rows
    with pytest.raises(ValueError, match="different rows .*data changed"):
        PromptStream(swapped, batch_size=5, seed=3).load_state_dict(state)


def test_stream_set_order():
    rows = _rows(6)
    s = PromptStream(rows, batch_size=4, seed=0)
    s.next_batch()
    order = ["arith-train-5", "arith-train-0", "arith-train-3"]
    s.set_order(order)
    assert s.epoch == 1 and s.position == 0  # a new order starts a new pass
    assert [r.uid for r in s.next_batch()] == order + ["arith-train-5"]  # wraps: the order repeats
    state = s.state_dict()
    assert state["order"] == order
    r = PromptStream(rows, batch_size=4, seed=0)
    r.load_state_dict(state)
    assert [x.uid for x in r.next_batch()] == [x.uid for x in s.next_batch()]
    s.set_order(None)
    assert sorted(x.uid for x in s.next_batch() + s.next_batch()[:2]) == sorted(x.uid for x in rows)
    with pytest.raises(ValueError, match="unknown"):
        s.set_order(["nope"])
    with pytest.raises(ValueError, match="duplicate"):
        s.set_order(["arith-train-1", "arith-train-1"])
