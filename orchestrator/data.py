"""Prompt data: config, loading with a bad-row report, and the deterministic prompt stream.

What this does:
- ``DataConfig`` is a tagged union keyed by ``type``: ``arithmetic`` (a seeded procedural generator),
  ``jsonl``, ``parquet`` and ``hf_dataset`` (a ``datasets.save_to_disk`` dir, or ``load_dataset`` on
  local files). Every variant carries the same prompt formatting fields (system prompt, template).
- ``load_data(cfg)`` returns train and eval ``PromptRow`` lists plus one ``LoadReport`` per source:
  bad rows (missing/empty prompt or answer, wrong types, unparsable lines, duplicate uids) are skipped
  and counted with their 1-based row number and reason, for the trainer to log.
- ``PromptStream`` yields batches in a seeded shuffled order, resumes exactly from ``state_dict()``,
  and accepts a custom order (``set_order``) from a curriculum.

What it does not do: tokenization (the rollout engine applies the chat template), scoring (the
verifier pool checks answers), or curriculum logic itself (it only obeys an order it is given).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
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
    num_operands: int = Field(default=2, ge=2, le=6, description="Operands per expression.")
    allow_negative: bool = Field(
        default=False, description="Allow negative answers; if false such expressions are redrawn."
    )
    question_template: str = Field(
        default="What is {expr}?",
        description="The row's prompt; '{expr}' is replaced by the expression (e.g. '7 + 5').",
    )
    seed: int = Field(default=0, description="Generator seed; the same seed gives the same problems.")
    num_train: int = Field(default=2000, ge=1, description="Number of training problems.")
    num_eval: int = Field(default=128, ge=0, description="Number of eval problems (drawn "
                          "independently; they may repeat training problems when the space is small).")

    @model_validator(mode="after")
    def _digit_range(self) -> ArithmeticData:
        if self.min_digits > self.max_digits:
            raise ValueError(f"min_digits ({self.min_digits}) > max_digits ({self.max_digits})")
        if self.max_value is not None and self.max_value < _lowest(self.max_digits):
            raise ValueError(f"max_value ({self.max_value}) is below the smallest "
                             f"{self.max_digits}-digit number")
        if "{expr}" not in self.question_template:
            raise ValueError("question_template must contain '{expr}'")
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
class LoadReport:
    """What loading one source kept and skipped; ``summary()`` is the line to log."""

    source: str
    num_ok: int = 0
    num_skipped: int = 0
    reasons: Counter = dataclasses.field(default_factory=Counter)
    examples: list[str] = dataclasses.field(default_factory=list)

    def skip(self, row: int, reason: str, detail: str = "") -> None:
        self.num_skipped += 1
        self.reasons[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"row {row}: {reason}" + (f" ({detail})" if detail else ""))

    def summary(self) -> str:
        s = f"{self.source}: {self.num_ok} rows ok, {self.num_skipped} skipped"
        if self.num_skipped:
            s += " (" + ", ".join(f"{r}: {n}" for r, n in self.reasons.most_common()) + ")"
            s += "; e.g. " + "; ".join(self.examples)
        return s


@dataclasses.dataclass
class LoadedData:
    train: list[PromptRow]
    eval: list[PromptRow]
    reports: list[LoadReport]


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


def _answer(value: Any) -> str | tuple[str]:
    """The answer as a string; a 1-tuple holds a skip reason."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return (f"answer is {type(value).__name__}, expected str or number",)
    if isinstance(value, float) and not math.isfinite(value):
        return ("answer is not finite",)
    s = str(value).strip()
    return s if s else ("empty answer",)


def _rows_from_records(
    records: Iterable[tuple[int, Any]], cfg: _FileData, split: str, report: LoadReport
) -> list[PromptRow]:
    """Validate records (row number, object or an exception from parsing) into PromptRows."""
    out: list[PromptRow] = []
    seen: set[str] = set()
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
            report.skip(row_no, ans[0])
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
        seen.add(uid)
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


def _load_file_source(cfg: _FileData, split: str) -> tuple[list[PromptRow], LoadReport]:
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
    rows = _rows_from_records(records, cfg, split, report)
    if not rows:
        raise DataError(f"no usable rows in {report.summary()}")
    return rows, report


def load_data(cfg: DataConfig) -> LoadedData:
    """Load (or generate) the train and eval prompts of a data config."""
    if isinstance(cfg, ArithmeticData):
        train = generate_arithmetic(cfg, "train", cfg.num_train)
        ev = generate_arithmetic(cfg, "eval", cfg.num_eval)
        reports = [LoadReport(source="arithmetic[train]", num_ok=len(train)),
                   LoadReport(source="arithmetic[eval]", num_ok=len(ev))]
        return LoadedData(train=train, eval=ev, reports=reports)

    train, report = _load_file_source(cfg, "train")
    reports = [report]
    ev: list[PromptRow] = []
    has_eval = cfg.eval_split is not None if isinstance(cfg, HFDatasetData) else cfg.eval_path is not None
    if has_eval:
        ev, eval_report = _load_file_source(cfg, "eval")
        reports.append(eval_report)
    elif cfg.eval_fraction > 0:
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


# --------------------------------------------------------------------------------------------------
# arithmetic generator


def _lowest(digits: int) -> int:
    return 0 if digits == 1 else 10 ** (digits - 1)


def _operand(rng: random.Random, cfg: ArithmeticData) -> int:
    digits = rng.randint(cfg.min_digits, cfg.max_digits)
    hi = 10**digits - 1 if cfg.max_value is None else min(10**digits - 1, cfg.max_value)
    return rng.randint(_lowest(digits), hi)


def _evaluate(operands: Sequence[int], ops: Sequence[str]) -> int:
    """Integer value of operands joined by ops, with * binding tighter than + and -."""
    terms, signs = [operands[0]], []
    for op, x in zip(ops, operands[1:]):
        if op == "*":
            terms[-1] *= x
        else:
            terms.append(x)
            signs.append(op)
    total = terms[0]
    for sign, t in zip(signs, terms[1:]):
        total = total + t if sign == "+" else total - t
    return total


def generate_arithmetic(cfg: ArithmeticData, split: str, n: int) -> list[PromptRow]:
    """``n`` problems for ``split``; deterministic in (cfg, split, n)."""
    rng = random.Random(f"arithmetic:{cfg.seed}:{split}")
    rows = []
    for i in range(n):
        for _ in range(1000):
            operands = [_operand(rng, cfg) for _ in range(cfg.num_operands)]
            ops = [rng.choice(cfg.operations) for _ in range(cfg.num_operands - 1)]
            value = _evaluate(operands, ops)
            if cfg.allow_negative or value >= 0:
                break
        else:  # practically unreachable; keeps the generator total rather than looping forever
            operands.sort(reverse=True)
            ops = ["+"] * len(ops)
            value = _evaluate(operands, ops)
        expr = " ".join([str(operands[0])] + [f"{op} {x}" for op, x in zip(ops, operands[1:])])
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
                "num_rows": len(self.rows), "order": order}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_rows"] != len(self.rows) or state["seed"] != self.seed:
            raise ValueError(
                f"PromptStream state is for {state['num_rows']} rows / seed {state['seed']}, but this "
                f"stream has {len(self.rows)} rows / seed {self.seed}: the data changed since the "
                f"checkpoint"
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
