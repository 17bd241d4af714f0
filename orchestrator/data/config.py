"""The ``data:`` section of the job config: a tagged union of sources keyed by ``type``.

``arithmetic`` (a seeded procedural generator), ``jsonl``, ``parquet`` and ``hf_dataset`` (a
``datasets.save_to_disk`` dir, or ``load_dataset`` on local files). Every variant carries the same
prompt formatting fields (system prompt, template). Validators only validate; the arithmetic
variant's split check counts its problem space with ``arithmetic.problem_space``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from forkrl.orchestrator.data.arithmetic import lowest, problem_space, split_problem
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

DEFAULT_PROMPT_TEMPLATE = "{prompt}\nPut your final answer in \\boxed{}."

REMOVED_FIELDS = {
    "shuffle_seed": "it was never read; the order of the training prompts is seeded by trainer.seed",
}
"""Fields older recipes may still set, with why they are gone: a recipe setting one gets this
reason instead of pydantic's bare "extra inputs are not permitted"."""


class DataBase(BaseModel):
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

    @model_validator(mode="before")
    @classmethod
    def _no_removed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            gone = [f"{name} was removed: {why}" for name, why in REMOVED_FIELDS.items() if name in data]
            if gone:
                raise ValueError("; ".join(gone))
        return data

    @field_validator("prompt_template")
    @classmethod
    def _has_placeholder(cls, v: str) -> str:
        if "{prompt}" not in v:
            raise ValueError("prompt_template must contain '{prompt}'")
        return v


class ArithmeticData(DataBase):
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
    the terms of a sum and the factors of a product, so "3 + 5" and "5 + 3" are one problem: they
    always fall on the same side, and the eval split never holds both. The default task has 400
    prompts but 210 problems; eval_fraction 0.35 holds out 68 of them, enough for 64 distinct eval
    problems (0.25 would hold out 46).
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
    num_eval: int = Field(default=64, ge=0, description="Number of eval problems: distinct up to "
                          "operand order, and all from the held-out part; more than that part "
                          "holds is an error.")
    eval_fraction: float = Field(default=0.35, ge=0.0, lt=1.0, description="Fraction of the "
                                 "problem space (of its problems, up to operand order) held out for "
                                 "eval (0 trains on all of it and needs num_eval=0).")
    split_seed: int = Field(default=0, description="Seed of the held-out part (independent of "
                            "`seed`, so eval problems stay fixed when the training draw changes).")

    @model_validator(mode="after")
    def _digit_range(self) -> ArithmeticData:
        if self.min_digits > self.max_digits:
            raise ValueError(f"min_digits ({self.min_digits}) > max_digits ({self.max_digits})")
        if self.max_value is not None and self.max_value < lowest(self.max_digits):
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
        problem = split_problem(self, problem_space(self), self.num_eval)
        if problem:
            raise ValueError(problem)
        return self


class FileData(DataBase):
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


class _PathData(FileData):
    """Fields shared by sources read from one training file (and optionally one eval file)."""

    path: Path = Field(description="Training file (.jsonl for type jsonl, .parquet for type parquet).")
    eval_path: Path | None = Field(default=None, description="Separate eval file (same format); "
                                   "exclusive with eval_fraction.")

    @model_validator(mode="after")
    def _one_eval_source(self) -> _PathData:
        _check_one_eval(self.eval_path, self.eval_fraction)
        return self


class JsonlData(_PathData):
    """One JSON object per line."""

    type: Literal["jsonl"] = Field(default="jsonl", description="Source kind.")


class ParquetData(_PathData):
    """A parquet file with one row per prompt."""

    type: Literal["parquet"] = Field(default="parquet", description="Source kind.")


class HFDatasetData(FileData):
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
