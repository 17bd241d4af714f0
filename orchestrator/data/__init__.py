"""Prompt data: config, loading with a bad-row report, held-out splits, and the prompt stream.

The package, one job per module:
- ``config``: ``DataConfig``, the job config's ``data:`` section, a tagged union keyed by ``type``
  (``arithmetic``, ``jsonl``, ``parquet``, ``hf_dataset``).
- ``rows``: ``PromptRow`` (chat messages + reference answer), prompt -> messages, ``normalised_prompt``.
- ``validation``: file records -> ``PromptRow`` or a numbered, counted skip.
- ``report``: ``LoadReport`` / ``SplitStats``, the lines the trainer logs per source.
- ``loaders``: ``load_data(cfg)``, the train and eval splits with eval held out from train.
- ``arithmetic``: the generator, its problem space (problems up to operand order) and split.
- ``stream``: ``PromptStream``, seeded shuffled batches that resume exactly.

What it does not do: tokenization (the driver applies the model's chat template to the rows'
messages before a request goes to the rollout engines), scoring (the verifier pool checks answers),
or curriculum logic itself (the stream only obeys an order it is given).

The names below are the package's public interface; import them from ``forkrl.orchestrator.data``.
"""

from forkrl.orchestrator.data.arithmetic import (
    ProblemSpace,
    generate_arithmetic,
    problem_key,
    problem_space,
)
from forkrl.orchestrator.data.config import (
    DEFAULT_PROMPT_TEMPLATE,
    ArithmeticData,
    DataConfig,
    HFDatasetData,
    JsonlData,
    ParquetData,
    parse_data_config,
)
from forkrl.orchestrator.data.loaders import load_data
from forkrl.orchestrator.data.report import LoadedData, LoadReport, SplitStats
from forkrl.orchestrator.data.rows import DataError, PromptRow, normalised_prompt
from forkrl.orchestrator.data.stream import PromptStream

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE", "ArithmeticData", "DataConfig", "DataError", "HFDatasetData", "JsonlData",
    "LoadReport", "LoadedData", "ParquetData", "ProblemSpace", "PromptRow", "PromptStream", "SplitStats",
    "generate_arithmetic", "load_data", "normalised_prompt", "parse_data_config", "problem_key",
    "problem_space",
]
