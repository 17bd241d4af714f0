"""orchestrator.data.validation (and rows): file records become PromptRows or numbered, counted skips."""

from __future__ import annotations

import json

from forkrl.orchestrator.data import JsonlData, load_data

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
