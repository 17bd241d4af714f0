"""Prompt data: config, loading with a bad-row report, held-out splits, and the prompt stream.

What this does:
- ``DataConfig`` is a tagged union keyed by ``type``: ``arithmetic`` (a seeded procedural generator),
  ``jsonl``, ``parquet`` and ``hf_dataset`` (a ``datasets.save_to_disk`` dir, or ``load_dataset`` on
  local files). Every variant carries the same prompt formatting fields (system prompt, template).
- ``load_data(cfg)`` returns train and eval ``PromptRow`` lists plus one ``LoadReport`` per source:
  bad rows (missing/empty/non-finite prompt or answer, wrong types, unparsable lines, duplicate uids,
  duplicate prompts) are skipped and counted with their 1-based row number and reason, for the
  trainer to log. Each report also says how many distinct prompts each split holds and how many eval
  prompts are training prompts too (0 by construction; counted, not assumed).
- The eval split is held out by construction: the generator never draws a training problem from the
  held-out part of its problem space (nor an eval problem from the rest), and file sources compare
  prompts after ``normalised_prompt`` (case, whitespace, Unicode form), dedupe within each split and
  drop training rows that repeat an eval prompt.
- ``PromptStream`` yields batches in a seeded shuffled order, resumes exactly from ``state_dict()``,
  and accepts a custom order (``set_order``) from a curriculum.

What it does not do: tokenization (the rollout engine applies the chat template), scoring (the
verifier pool checks answers), or curriculum logic itself (it only obeys an order it is given).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

DEFAULT_PROMPT_TEMPLATE = "{prompt}\nPut your final answer in \\boxed{}."
MAX_EXAMPLES = 5


class DataError(ValueError):
    """A data source cannot be used at all (missing file, no usable rows); the message says why."""


# --------------------------------------------------------------------------------------------------
# config


class _DataBase(BaseModel):
    """Fields shared by every source: how a row's prompt becomes chat messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompt: str | None = Field(
        default=None,
        description="System message put before every prompt; null sends none (note: SmolLM2's chat "
        "template then inserts its own default system message).",
    )
    prompt_template: str = Field(
        default=DEFAULT_PROMPT_TEMPLATE,
        description="User message built from a string prompt; '{prompt}' is replaced by the row's "
        "prompt (other braces are kept literally). Not applied to prompts given as chat messages.",
    )
    task: str = Field(
        default="math",
        min_length=1,
        description="Verifier task name given to rows that do not carry their own.",
    )
    shuffle_seed: int = Field(default=0, description="Seed of the PromptStream's per-epoch shuffle.")

    @field_validator("prompt_template")
    @classmethod
    def _has_placeholder(cls, v: str) -> str:
        if "{prompt}" not in v:
            raise ValueError("prompt_template must contain '{prompt}'")
        return v


class ArithmeticData(_DataBase):
    """Procedurally generated arithmetic problems with exact integer answers.

    The defaults (a + b, operands 0-19, boxed-answer instruction) are calibrated on SmolLM2-135M-
    Instruct with bench/calibrate_task.py: 17% mean per-sample accuracy, 64% pass@8 at T=1 (64
    prompts x 8), i.e. hard enough to improve on, easy enough that most groups carry a signal.
    Single-digit operands are too easy for pass@8 (~87%), full two-digit ones too hard (~9% acc).
    ``max_operands`` mixes expression lengths in one task; recipes/headroom.yaml uses it for a task
    with more room to improve (its measured numbers are in that recipe).

    Held-out split: a fixed ``eval_fraction`` of the problem space (chosen by a hash of each
    problem, seeded by ``split_seed``, not by ``seed``) is eval-only; training never draws from it,
    whatever ``seed``, ``num_train`` or ``num_eval``. A problem is its expression up to the order of
    the terms of a sum and the factors of a product, so "3 + 5" and "5 + 3" always fall on the same
    side. The default task has 400 distinct prompts: about 100 are held out.
    """

    type: Literal["arithmetic"] = Field(default="arithmetic", description="Source kind.")
    operations: list[Literal["+", "-", "*"]] = Field(
        default=["+"],
        min_length=1,
        description="Operators drawn uniformly for each gap between operands (usual precedence).",
    )
    min_digits: int = Field(default=1, ge=1, le=9, description="Fewest digits of an operand "
                            "(1 digit means 0-9, n>1 digits means 10^(n-1)..10^n-1).")
    max_digits: int = Field(default=2, ge=1, le=9, description="Most digits of an operand.")
    max_value: int | None = Field(
        default=19, ge=0, description="Optional cap on every operand (finer than digits: e.g. "
        "min_digits=1, max_digits=2, max_value=19 draws 0-9 or 10-19)."
    )
    num_operands: int = Field(default=2, ge=2, le=6, description="Operands per expression (the "
                              "fewest, when max_operands is set).")
    max_operands: int | None = Field(
        default=None, ge=2, le=6, description="If set, each problem draws its operand count "
        "uniformly from num_operands..max_operands: one task mixing short (solvable, so groups carry "
        "a signal from the start) and longer multi-step expressions (headroom). null = always "
        "num_operands."
    )
    allow_negative: bool = Field(
        default=False, description="Allow negative answers; if false such expressions are redrawn."
    )
    question_template: str = Field(
        default="What is {expr}?",
        description="The row's prompt; '{expr}' is replaced by the expression (e.g. '7 + 5').",
    )
    seed: int = Field(default=0, description="Generator seed; the same seed gives the same problems.")
    num_train: int = Field(default=2000, ge=1, description="Number of training problems (drawn "
                           "with repeats from the part of the problem space that is not held out).")
    num_eval: int = Field(default=64, ge=0, description="Number of eval problems: distinct, and "
                          "all from the held-out part; more than that part holds is an error.")
    eval_fraction: float = Field(default=0.25, ge=0.0, lt=1.0, description="Fraction of the "
                                 "problem space held out for eval (0 trains on all of it and "
                                 "needs num_eval=0).")
    split_seed: int = Field(default=0, description="Seed of the held-out part (independent of "
                            "`seed`, so eval problems stay fixed when the training draw changes).")

    @model_validator(mode="after")
    def _digit_range(self) -> ArithmeticData:
        if self.min_digits > self.max_digits:
            raise ValueError(f"min_digits ({self.min_digits}) > max_digits ({self.max_digits})")
        if self.max_value is not None and self.max_value < _lowest(self.max_digits):
            raise ValueError(f"max_value ({self.max_value}) is below the smallest "
                             f"{self.max_digits}-digit number")
        if "{expr}" not in self.question_template:
            raise ValueError("question_template must contain '{expr}'")
        if self.max_operands is not None and self.max_operands < self.num_operands:
            raise ValueError(f"max_operands ({self.max_operands}) < num_operands ({self.num_operands})")
        return self

    @model_validator(mode="after")
    def _split_fits(self) -> ArithmeticData:
        if self.num_eval > 0 and self.eval_fraction == 0:
            raise ValueError(f"num_eval={self.num_eval} needs eval_fraction > 0: eval problems "
                             "come only from the held-out part of the problem space")
        problem = _split_problem(self, problem_space(self), self.num_eval)
        if problem:
            raise ValueError(problem)
        return self


class _FileData(_DataBase):
    """Fields shared by sources read from files."""

    prompt_key: str = Field(default="prompt", description="Column holding the prompt: a string, "
                            "or a list of chat messages ({role, content}).")
    answer_key: str = Field(default="answer", description="Column holding the reference answer "
                            "(string or number).")
    task_key: str | None = Field(default=None, description="Optional column naming each row's "
                                 "verifier task; rows without it get `task`.")
    uid_key: str | None = Field(default=None, description="Optional column with a unique row id; "
                                "default ids are '<split>-<row number>'.")
    eval_fraction: float = Field(default=0.0, ge=0.0, lt=1.0, description="Hold out this fraction "
                                 "of the training rows (seeded by split_seed) as the eval set.")
    split_seed: int = Field(default=0, description="Seed of the eval_fraction hold-out.")
    max_rows: int | None = Field(default=None, ge=1, description="Keep at most this many good "
                                 "training rows (after the hold-out); null keeps all.")


class JsonlData(_FileData):
    """One JSON object per line."""

    type: Literal["jsonl"] = Field(default="jsonl", description="Source kind.")
    path: Path = Field(description="Training file (.jsonl).")
    eval_path: Path | None = Field(default=None, description="Separate eval file (same format); "
                                   "exclusive with eval_fraction.")

    @model_validator(mode="after")
    def _one_eval_source(self) -> JsonlData:
        _check_one_eval(self.eval_path, self.eval_fraction)
        return self


class ParquetData(_FileData):
    """A parquet file with one row per prompt."""

    type: Literal["parquet"] = Field(default="parquet", description="Source kind.")
    path: Path = Field(description="Training file (.parquet).")
    eval_path: Path | None = Field(default=None, description="Separate eval file (same format); "
                                   "exclusive with eval_fraction.")

    @model_validator(mode="after")
    def _one_eval_source(self) -> ParquetData:
        _check_one_eval(self.eval_path, self.eval_fraction)
        return self


class HFDatasetData(_FileData):
    """A Hugging Face ``datasets`` dataset on local disk."""

    type: Literal["hf_dataset"] = Field(default="hf_dataset", description="Source kind.")
    path: str = Field(description="A `save_to_disk` dir, a local dir of data files, or the data "
                      "file(s) for `builder`.")
    builder: str | None = Field(default=None, description="If set, `load_dataset(builder, "
                                "data_files=path)` (e.g. 'json', 'csv', 'parquet').")
    split: str = Field(default="train", description="Training split name.")
    eval_split: str | None = Field(default=None, description="Eval split name; exclusive with "
                                   "eval_fraction.")

    @model_validator(mode="after")
    def _one_eval_source(self) -> HFDatasetData:
        _check_one_eval(self.eval_split, self.eval_fraction)
        return self


def _check_one_eval(separate: object, fraction: float) -> None:
    if separate is not None and fraction > 0:
        raise ValueError("give either a separate eval source or eval_fraction, not both")


DataConfig = Annotated[
    Union[ArithmeticData, JsonlData, ParquetData, HFDatasetData], Field(discriminator="type")
]
"""The job config's ``data:`` section; validate a plain dict with ``parse_data_config``."""

_ADAPTER: TypeAdapter[DataConfig] = TypeAdapter(DataConfig)


def parse_data_config(obj: Any) -> DataConfig:
    """Validate a dict (e.g. from YAML) into the matching DataConfig variant."""
    return _ADAPTER.validate_python(obj)


# --------------------------------------------------------------------------------------------------
# rows and reports


@dataclasses.dataclass
class PromptRow:
    """One prompt: chat messages for the engine and the reference answer for the verifier."""

    uid: str
    messages: list[dict[str, str]]
    answer: str
    task: str = "math"
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SplitStats:
    """What one split ended up holding, so a log line shows whether eval is really held out.

    ``in_train`` (eval only) counts eval rows whose normalised prompt is also a training prompt; it
    is computed from the final rows rather than assumed, so a regression shows up in the log.
    ``space`` (generator only) is how many distinct problems the split can draw from.
    """

    name: str
    rows: int
    distinct: int
    in_train: int | None = None
    space: int | None = None

    def __str__(self) -> str:
        s = f"{self.name} split: {self.rows} rows, {self.distinct} distinct prompts"
        if self.space is not None:
            s += f" (of {self.space} possible)"
        if self.in_train is not None:
            s += f", {self.in_train} also in train"
        return s


@dataclasses.dataclass
class LoadReport:
    """What loading one source kept and skipped; ``summary()`` is the line to log."""

    source: str
    num_ok: int = 0
    num_skipped: int = 0
    reasons: Counter = dataclasses.field(default_factory=Counter)
    examples: list[str] = dataclasses.field(default_factory=list)
    splits: list[SplitStats] = dataclasses.field(default_factory=list)

    def skip(self, row: int, reason: str, detail: str = "") -> None:
        self.num_skipped += 1
        self.reasons[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"row {row}: {reason}" + (f" ({detail})" if detail else ""))

    def summary(self) -> str:
        s = f"{self.source}: {self.num_ok} rows ok, {self.num_skipped} skipped"
        if self.num_skipped:
            s += " (" + ", ".join(f"{r}: {n}" for r, n in self.reasons.most_common()) + ")"
        s += "".join(f"; {split}" for split in self.splits)
        if self.num_skipped:
            s += "; e.g. " + "; ".join(self.examples)
        return s


@dataclasses.dataclass
class LoadedData:
    train: list[PromptRow]
    eval: list[PromptRow]
    reports: list[LoadReport]

    def overlap(self) -> int:
        """Eval rows whose normalised prompt is also a training prompt (0 when eval is held out)."""
        train = {normalised_prompt(r.messages) for r in self.train}
        return sum(normalised_prompt(r.messages) in train for r in self.eval)


def normalised_prompt(messages: Sequence[dict[str, str]]) -> str:
    """The text two prompts are compared by when deduping and holding out.

    Unicode NFKC form, case-folded, whitespace runs collapsed: "What is 2+3?" and " what  IS 2+3? "
    are one problem. Spacing *inside* tokens is kept ("2+3" is not "2 + 3"), since removing all
    whitespace would merge prompts that differ ("1 2" vs "12").
    """
    return "\n".join(
        f"{m['role']}: " + " ".join(unicodedata.normalize("NFKC", m["content"]).casefold().split())
        for m in messages
    )


_ROLES = ("system", "user", "assistant")


def _messages(prompt: Any, cfg: _DataBase) -> list[dict[str, str]] | str:
    """Chat messages for a prompt value, or a skip reason."""
    if isinstance(prompt, str):
        if not prompt.strip():
            return "empty prompt"
        msgs = [{"role": "user", "content": cfg.prompt_template.replace("{prompt}", prompt)}]
    elif isinstance(prompt, (list, tuple)):
        if not prompt:
            return "empty prompt"
        msgs = []
        for m in prompt:
            if not (isinstance(m, dict) and m.get("role") in _ROLES
                    and isinstance(m.get("content"), str)):
                return "bad chat message in prompt"
            msgs.append({"role": m["role"], "content": m["content"]})
        if msgs[-1]["role"] == "assistant" or not any(m["role"] == "user" for m in msgs):
            return "bad chat message in prompt"
    else:
        return f"prompt is {type(prompt).__name__}, expected str or chat messages"
    if cfg.system_prompt is not None and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": cfg.system_prompt})
    return msgs


_NON_FINITE = {"nan", "inf", "infinity"}


def _answer(value: Any) -> str | tuple[str, str]:
    """The answer as a string; a (reason, detail) pair says why the row is skipped.

    NaN and infinities are refused as floats (JSON's NaN/Infinity literals parse to them) and as
    the strings Python's float() reads as such ("nan", "-inf", "Infinity"): no model output can be
    verified against them. LaTeX answers such as "\\infty" are kept. None never reaches here as
    a value to stringify: callers report a missing answer first.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return (f"answer is {type(value).__name__}, expected str or number", "")
    s = str(value).strip()  # str(float("nan")) == "nan": one check covers floats and strings
    if not s:
        return ("empty answer", "")
    if s.lstrip("+-").casefold() in _NON_FINITE:
        return ("answer is not finite", repr(value))
    return s


def _rows_from_records(
    records: Iterable[tuple[int, Any]], cfg: _FileData, split: str, report: LoadReport,
    exclude: dict[str, int] | None = None,
) -> list[PromptRow]:
    """Validate records (row number, object or an exception from parsing) into PromptRows.

    Rows repeating an earlier row's normalised prompt are skipped ("duplicate prompt"), so a split
    holds distinct problems; rows whose prompt is in ``exclude`` (normalised prompt -> row number
    in the eval source) are skipped as "prompt in eval split", which keeps eval held out.
    """
    out: list[PromptRow] = []
    seen: set[str] = set()
    first_row: dict[str, int] = {}
    pk, ak = cfg.prompt_key, cfg.answer_key
    for row_no, rec in records:
        if isinstance(rec, Exception):
            report.skip(row_no, "unparsable line", str(rec)[:80])
            continue
        if not isinstance(rec, dict):
            report.skip(row_no, "row is not an object", type(rec).__name__)
            continue
        if rec.get(pk) is None:
            report.skip(row_no, f"missing {pk!r}")
            continue
        if rec.get(ak) is None:
            report.skip(row_no, f"missing {ak!r}")
            continue
        msgs = _messages(rec[pk], cfg)
        if isinstance(msgs, str):
            report.skip(row_no, msgs)
            continue
        ans = _answer(rec[ak])
        if isinstance(ans, tuple):
            report.skip(row_no, *ans)
            continue
        task = cfg.task
        if cfg.task_key is not None and rec.get(cfg.task_key) is not None:
            task = rec[cfg.task_key]
            if not isinstance(task, str) or not task.strip():
                report.skip(row_no, f"bad {cfg.task_key!r}", repr(task)[:40])
                continue
        if cfg.uid_key is not None:
            uid = rec.get(cfg.uid_key)
            if not isinstance(uid, (str, int)) or isinstance(uid, bool) or str(uid) == "":
                report.skip(row_no, f"missing {cfg.uid_key!r}")
                continue
            uid = str(uid)
        else:
            uid = f"{split}-{row_no}"
        if uid in seen:
            report.skip(row_no, "duplicate uid", uid)
            continue
        key = normalised_prompt(msgs)
        if key in first_row:
            report.skip(row_no, "duplicate prompt", f"as row {first_row[key]}")
            continue
        if exclude and key in exclude:
            report.skip(row_no, "prompt in eval split", f"eval row {exclude[key]}")
            continue
        seen.add(uid)
        first_row[key] = row_no
        meta = {"row": row_no}
        out.append(PromptRow(uid=uid, messages=msgs, answer=ans, task=task, meta=meta))
        report.num_ok += 1
    return out


# --------------------------------------------------------------------------------------------------
# sources


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
    cfg: _FileData, split: str, exclude: dict[str, int] | None = None
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
    rows = _rows_from_records(records, cfg, split, report, exclude)
    if not rows:
        raise DataError(f"no usable rows in {report.summary()}")
    return rows, report


def load_data(cfg: DataConfig) -> LoadedData:
    """Load (or generate) the train and eval prompts of a data config, eval held out from train."""
    data = _load_arithmetic(cfg) if isinstance(cfg, ArithmeticData) else _load_files(cfg)
    _describe_splits(data, problem_space(cfg) if isinstance(cfg, ArithmeticData) else None)
    return data


def _load_arithmetic(cfg: ArithmeticData) -> LoadedData:
    train = generate_arithmetic(cfg, "train", cfg.num_train)
    ev = generate_arithmetic(cfg, "eval", cfg.num_eval)
    reports = [LoadReport(source="arithmetic[train]", num_ok=len(train)),
               LoadReport(source="arithmetic[eval]", num_ok=len(ev))]
    return LoadedData(train=train, eval=ev, reports=reports)


def _load_files(cfg: _FileData) -> LoadedData:
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


def _describe_splits(data: LoadedData, space: ProblemSpace | None) -> None:
    """Attach each split's distinct-prompt count and the eval/train overlap to the reports.

    Train goes on the first report, eval on the last (the same one when eval is a hold-out of a
    single file), so the trainer's one log line per source carries them.
    """
    def distinct(rows: list[PromptRow]) -> int:
        return len({normalised_prompt(r.messages) for r in rows})

    data.reports[0].splits.append(SplitStats(
        "train", len(data.train), distinct(data.train), space=space.train if space else None))
    data.reports[-1].splits.append(SplitStats(
        "eval", len(data.eval), distinct(data.eval), in_train=data.overlap(),
        space=space.held_out if space else None))


# --------------------------------------------------------------------------------------------------
# arithmetic generator

ENUMERATION_LIMIT = 50_000
"""Problem spaces with at most this many operand/operator combinations are counted exactly, so a
too-large num_eval fails when the config is validated (~0.3 s at 30k). Larger spaces are not counted:
there a shortfall can only show as MAX_TRIES failed draws when the data is generated."""
MAX_TRIES = 100_000
"""Draws per row before giving up (negative answers and the other split's problems are redrawn)."""


@dataclasses.dataclass(frozen=True)
class ProblemSpace:
    """How many distinct prompts the generator can produce, and how many of them are held out."""

    total: int
    held_out: int

    @property
    def train(self) -> int:
        return self.total - self.held_out


def _lowest(digits: int) -> int:
    return 0 if digits == 1 else 10 ** (digits - 1)


def _highest(digits: int, cfg: ArithmeticData) -> int:
    return 10**digits - 1 if cfg.max_value is None else min(10**digits - 1, cfg.max_value)


def _operand(rng: random.Random, cfg: ArithmeticData) -> int:
    digits = rng.randint(cfg.min_digits, cfg.max_digits)
    return rng.randint(_lowest(digits), _highest(digits, cfg))


def _terms(operands: Sequence[int], ops: Sequence[str]) -> list[tuple[str, list[int]]]:
    """The expression as signed products, * binding tighter: 2 * 3 - 4 -> [(+, [2, 3]), (-, [4])]."""
    terms = [("+", [operands[0]])]
    for op, x in zip(ops, operands[1:]):
        if op == "*":
            terms[-1][1].append(x)
        else:
            terms.append((op, [x]))
    return terms


def _evaluate(operands: Sequence[int], ops: Sequence[str]) -> int:
    """Integer value of operands joined by ops, with * binding tighter than + and -."""
    return sum(math.prod(f) if sign == "+" else -math.prod(f) for sign, f in _terms(operands, ops))


def _problem_key(operands: Sequence[int], ops: Sequence[str]) -> str:
    """The problem up to commutativity: terms and factors sorted, so "5 + 3" is "3 + 5" and
    "7 - 4 + 2 * 3" is "3 * 2 + 7 - 4". The hold-out is decided on this key, so a held-out problem
    is not trained on with its operands in another order."""
    return " ".join(sorted(sign + "*".join(map(str, sorted(f))) for sign, f in _terms(operands, ops)))


def _is_held_out(key: str, cfg: ArithmeticData) -> bool:
    """Whether a problem belongs to eval: a stable hash (not Python's salted hash()) of the split
    seed and problem, compared with eval_fraction, so the same problems are held out in every
    process and run."""
    digest = hashlib.blake2b(f"{cfg.split_seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < cfg.eval_fraction * 2**64


def problem_space(cfg: ArithmeticData) -> ProblemSpace | None:
    """Count the distinct prompts (valid operand/operator combinations) and the held-out ones by
    enumeration; None when there are more than ENUMERATION_LIMIT combinations."""
    values = [v for d in range(cfg.min_digits, cfg.max_digits + 1)
              for v in range(_lowest(d), _highest(d, cfg) + 1)]
    ops = sorted(set(cfg.operations))
    counts = _operand_counts(cfg)
    if sum(len(values) ** k * len(ops) ** (k - 1) for k in counts) > ENUMERATION_LIMIT:
        return None
    total = held = 0
    for k in counts:
        for operands in itertools.product(values, repeat=k):
            for op_seq in itertools.product(ops, repeat=k - 1):
                if cfg.allow_negative or _evaluate(operands, op_seq) >= 0:
                    total += 1
                    held += _is_held_out(_problem_key(operands, op_seq), cfg)
    return ProblemSpace(total=total, held_out=held)


def _operand_counts(cfg: ArithmeticData) -> range:
    """The operand counts a problem can have: num_operands, or num_operands..max_operands."""
    return range(cfg.num_operands, (cfg.max_operands or cfg.num_operands) + 1)


def _split_problem(cfg: ArithmeticData, space: ProblemSpace | None, num_eval: int) -> str | None:
    """Why the split cannot serve ``num_eval`` distinct eval problems and any training, or None."""
    if space is None:
        return None
    if space.train == 0:
        return (f"eval_fraction={cfg.eval_fraction} holds out all {space.total} problems of this "
                f"task (split_seed={cfg.split_seed}); none is left to train on")
    if num_eval > space.held_out:
        return (f"num_eval={num_eval} asks for more distinct eval problems than the "
                f"{space.held_out} that eval_fraction={cfg.eval_fraction} holds out of this task's "
                f"{space.total} (split_seed={cfg.split_seed}); lower num_eval or raise eval_fraction")
    return None


def generate_arithmetic(cfg: ArithmeticData, split: str, n: int) -> list[PromptRow]:
    """``n`` problems for ``split``; deterministic in (cfg, split, n).

    "train" draws (with repeats, as before) only problems outside the held-out part, "eval" draws
    distinct problems only inside it: a draw from the other side, a repeat eval problem or a
    negative answer (unless allowed) is redrawn.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    want_held_out = split == "eval"
    problem = _split_problem(cfg, problem_space(cfg), n if want_held_out else 0)
    if problem:
        raise DataError(problem)
    rng = random.Random(f"arithmetic:{cfg.seed}:{split}")
    counts = _operand_counts(cfg)
    rows: list[PromptRow] = []
    drawn: set[str] = set()
    for i in range(n):
        for _ in range(MAX_TRIES):
            # the count is drawn only when it varies, so tasks without max_operands keep their draws
            k = counts[0] if len(counts) == 1 else rng.randint(counts[0], counts[-1])
            operands = [_operand(rng, cfg) for _ in range(k)]
            ops = [rng.choice(cfg.operations) for _ in range(k - 1)]
            value = _evaluate(operands, ops)
            expr = " ".join([str(operands[0])] + [f"{op} {x}" for op, x in zip(ops, operands[1:])])
            if ((cfg.allow_negative or value >= 0)
                    and _is_held_out(_problem_key(operands, ops), cfg) == want_held_out
                    and not (want_held_out and expr in drawn)):
                break
        else:
            raise DataError(f"no new {split} problem in {MAX_TRIES} draws after {i} rows: the "
                            f"{split} part of the problem space is (nearly) used up or rarely hit; "
                            f"check num_{split}, eval_fraction and allow_negative")
        drawn.add(expr)
        question = cfg.question_template.replace("{expr}", expr)
        msgs = _messages(question, cfg)
        assert isinstance(msgs, list)
        rows.append(PromptRow(uid=f"arith-{split}-{i}", messages=msgs, answer=str(value),
                              task=cfg.task, meta={"expr": expr}))
    return rows


# --------------------------------------------------------------------------------------------------
# stream


class PromptStream:
    """Endless batches of prompts in a deterministic, seeded, per-epoch shuffled order.

    Epoch ``e`` is a permutation seeded by ``(seed, e)``, so ``(epoch, position)`` is all the state an
    exact resume needs. A batch that reaches the end of an epoch continues into the next one, so every
    batch is full. ``set_order(uids)`` installs a custom order (e.g. a curriculum's): it is served from
    its start at the next batch and for every later epoch, until ``set_order(None)`` returns to
    shuffling. A custom order may name a subset of the rows (the others are then not served).
    """

    def __init__(self, rows: Sequence[PromptRow], batch_size: int, seed: int = 0):
        if not rows:
            raise ValueError("PromptStream needs at least one row")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.rows = list(rows)
        self.batch_size = batch_size
        self.seed = seed
        self._index = {r.uid: i for i, r in enumerate(self.rows)}
        if len(self._index) != len(self.rows):
            raise ValueError("PromptStream rows must have unique uids")
        self.epoch = 0
        self.position = 0
        self._custom: list[int] | None = None
        self._order = self._epoch_order()

    def _epoch_order(self) -> list[int]:
        if self._custom is not None:
            return list(self._custom)
        order = list(range(len(self.rows)))
        random.Random(f"stream:{self.seed}:{self.epoch}").shuffle(order)
        return order

    def set_order(self, uids: Sequence[str] | None) -> None:
        """Serve ``uids`` in this order from the next batch on (``None``: back to seeded shuffles)."""
        if uids is not None:
            unknown = [u for u in uids if u not in self._index]
            if unknown:
                raise ValueError(f"set_order: {len(unknown)} unknown uids, e.g. {unknown[:3]}")
            if len(set(uids)) != len(uids):
                raise ValueError("set_order: duplicate uids")
            if not uids:
                raise ValueError("set_order: empty order")
            self._custom = [self._index[u] for u in uids]
        else:
            self._custom = None
        if self.position > 0:  # a new order starts a new pass
            self.epoch += 1
            self.position = 0
        self._order = self._epoch_order()

    def next_batch(self) -> list[PromptRow]:
        batch = []
        while len(batch) < self.batch_size:
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._epoch_order()
            take = min(self.batch_size - len(batch), len(self._order) - self.position)
            batch.extend(self.rows[i] for i in self._order[self.position:self.position + take])
            self.position += take
        return batch

    def __iter__(self) -> Iterator[list[PromptRow]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        order = None if self._custom is None else [self.rows[i].uid for i in self._custom]
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "num_rows": len(self.rows), "order": order, "fingerprint": self.fingerprint()}

    def fingerprint(self) -> str:
        """A hash of every row's uid, prompt and answer: a resume must continue on the SAME rows, not on
        rows a changed generator or file happens to give the same count (the eval hold-out changed
        which problems train under one seed, for instance)."""
        h = hashlib.blake2b(digest_size=12)
        for r in self.rows:
            h.update(json.dumps([r.uid, r.messages, r.answer], sort_keys=True).encode())
        return h.hexdigest()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_rows"] != len(self.rows) or state["seed"] != self.seed:
            raise ValueError(
                f"PromptStream state is for {state['num_rows']} rows / seed {state['seed']}, but this "
                f"stream has {len(self.rows)} rows / seed {self.seed}: the data changed since the "
                f"checkpoint"
            )
        if "fingerprint" in state and state["fingerprint"] != self.fingerprint():  # absent: older checkpoints
            raise ValueError(
                f"PromptStream state is for different rows (fingerprint {state['fingerprint']}, this stream "
                f"{self.fingerprint()}): the data changed since the checkpoint"
            )
        order = state.get("order")
        if order is not None:
            unknown = [u for u in order if u not in self._index]
            if unknown:
                raise ValueError(f"PromptStream state names unknown uids, e.g. {unknown[:3]}")
        self._custom = None if order is None else [self._index[u] for u in order]
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._epoch_order()
