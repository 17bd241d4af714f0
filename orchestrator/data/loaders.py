"""``load_data(cfg)``: the train and eval ``PromptRow`` lists of a data config, eval held out.

The eval split is held out by construction: the generator never draws a training problem from the
held-out part of its problem space (nor an eval problem from the rest), and file sources compare
prompts after ``normalised_prompt`` (case, whitespace, Unicode form), dedupe within each split and
drop training rows that repeat an eval prompt. One ``LoadReport`` per source says what was kept and
skipped, how many distinct problems and prompts each split holds, and how many eval rows are
training problems too (0 by construction; counted, not assumed).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from forkrl.orchestrator.data.arithmetic import (
    ProblemSpace,
    generate_arithmetic,
    problem_space,
)
from forkrl.orchestrator.data.config import (
    ArithmeticData,
    DataConfig,
    FileData,
    HFDatasetData,
    JsonlData,
)
from forkrl.orchestrator.data.report import LoadedData, LoadReport, SplitStats
from forkrl.orchestrator.data.rows import DataError, PromptRow, normalised_prompt
from forkrl.orchestrator.data.validation import rows_from_records


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue  # blank lines (e.g. a trailing newline) are not rows
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as e:
                yield line_no, e


def _table_records(rows: Iterable[dict]) -> Iterator[tuple[int, Any]]:
    return ((i, r) for i, r in enumerate(rows, start=1))


def _parquet_records(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:
        raise DataError(f"cannot read parquet file {path}: {e}") from None
    return _table_records(table.to_pylist())


def _hf_records(cfg: HFDatasetData, split: str) -> Iterator[tuple[int, Any]]:
    import datasets

    path = Path(cfg.path).expanduser()
    try:
        if cfg.builder is None and path.is_dir() and (
            (path / "dataset_dict.json").exists() or (path / "state.json").exists()
        ):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"{cfg.path} has no split {split!r} (splits: {list(ds)})")
                ds = ds[split]
            elif split != cfg.split:
                raise DataError(f"{cfg.path} is a single dataset; it has no eval split {split!r}")
        elif cfg.builder is not None:
            ds = datasets.load_dataset(cfg.builder, data_files=str(path), split=split)
        else:
            ds = datasets.load_dataset(str(path), split=split)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"cannot load dataset {cfg.path!r} split {split!r}: "
                        f"{type(e).__name__}: {str(e)[:300]}") from None
    return _table_records(ds)


def _load_file_source(
    cfg: FileData, split: str, exclude: dict[str, int] | None = None
) -> tuple[list[PromptRow], LoadReport]:
    if isinstance(cfg, HFDatasetData):
        which = cfg.split if split == "train" else cfg.eval_split
        report = LoadReport(source=f"{cfg.path}[{which}]")
        records = _hf_records(cfg, which)
    else:
        path = cfg.path if split == "train" else cfg.eval_path
        path = Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"data file {str(path)!r} does not exist")
        report = LoadReport(source=str(path))
        records = _jsonl_records(path) if isinstance(cfg, JsonlData) else _parquet_records(path)
    rows = rows_from_records(records, cfg, split, report, exclude)
    if not rows:
        raise DataError(f"no usable rows in {report.summary()}")
    return rows, report


def _load_arithmetic(cfg: ArithmeticData) -> LoadedData:
    train = generate_arithmetic(cfg, "train", cfg.num_train)
    ev = generate_arithmetic(cfg, "eval", cfg.num_eval)
    reports = [LoadReport(source="arithmetic[train]", num_ok=len(train)),
               LoadReport(source="arithmetic[eval]", num_ok=len(ev))]
    return LoadedData(train=train, eval=ev, reports=reports)


def _load_files(cfg: FileData) -> LoadedData:
    """A separate eval source wins: it is loaded first and training rows repeating one of its
    prompts are dropped, so the eval set stays the fixed reference (e.g. a benchmark) whatever the
    training file holds. With ``eval_fraction`` the hold-out is drawn from the deduped training
    rows, so it holds out problems, not copies of training rows."""
    has_eval = cfg.eval_split is not None if isinstance(cfg, HFDatasetData) else cfg.eval_path is not None
    ev: list[PromptRow] = []
    reports: list[LoadReport] = []
    if has_eval:
        ev, eval_report = _load_file_source(cfg, "eval")
        reports.append(eval_report)
    exclude = {normalised_prompt(r.messages): r.meta["row"] for r in ev}
    train, report = _load_file_source(cfg, "train", exclude)
    reports.insert(0, report)
    if not has_eval and cfg.eval_fraction > 0:
        n_eval = max(1, round(len(train) * cfg.eval_fraction))
        if n_eval >= len(train):
            raise DataError(f"eval_fraction {cfg.eval_fraction} leaves no training rows "
                            f"out of {len(train)}")
        held = set(random.Random(f"holdout:{cfg.split_seed}").sample(range(len(train)), n_eval))
        ev = [r for i, r in enumerate(train) if i in held]
        train = [r for i, r in enumerate(train) if i not in held]
    if cfg.max_rows is not None:
        train = train[: cfg.max_rows]
    return LoadedData(train=train, eval=ev, reports=reports)


def _prompt(row: PromptRow) -> str:
    return normalised_prompt(row.messages)


def _generated_problem(row: PromptRow) -> str:
    return row.meta["problem"]


def _describe_splits(data: LoadedData, problem: Callable[[PromptRow], str],
                     space: ProblemSpace | None) -> None:
    """Attach each split's distinct problem and prompt counts and the eval/train overlap (by
    problem) to the reports.

    Train goes on the first report, eval on the last (the same one when eval is a hold-out of a
    single file), so the trainer's one log line per source carries them.
    """
    def stats(name: str, rows: list[PromptRow], **extra: int | None) -> SplitStats:
        return SplitStats(name, len(rows), len({problem(r) for r in rows}),
                          len({_prompt(r) for r in rows}), **extra)

    trained = {problem(r) for r in data.train}
    data.reports[0].splits.append(stats("train", data.train, space=space.train if space else None))
    data.reports[-1].splits.append(stats(
        "eval", data.eval, in_train=sum(problem(r) in trained for r in data.eval),
        space=space.held_out if space else None))


def load_data(cfg: DataConfig) -> LoadedData:
    """Load (or generate) the train and eval prompts of a data config, eval held out from train."""
    if isinstance(cfg, ArithmeticData):
        data = _load_arithmetic(cfg)
        _describe_splits(data, _generated_problem, problem_space(cfg))
    else:
        data = _load_files(cfg)
        _describe_splits(data, _prompt, None)
    return data
