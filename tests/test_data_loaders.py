"""orchestrator.data.loaders: the three file sources, separate eval sources and hold-outs, unusable sources."""

from __future__ import annotations

import json

import pytest
from forkrl.orchestrator.data import (
    DataError,
    HFDatasetData,
    JsonlData,
    ParquetData,
    load_data,
)
from pydantic import ValidationError


def _write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


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

    jl = _write_jsonl(tmp_path / "x.jsonl", [json.dumps({"prompt": "What is 1 + 1?", "answer": "2"}),
                                             json.dumps({"prompt": "What is 2 + 3?", "answer": 5})])
    d = load_data(HFDatasetData(path=str(jl), builder="json"))
    assert [r.answer for r in d.train] == ["2", "5"]

    with pytest.raises(DataError, match="no split 'nope'"):
        load_data(HFDatasetData(path=str(tmp_path / "dd"), eval_split="nope"))
