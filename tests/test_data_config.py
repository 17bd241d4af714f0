"""orchestrator.data.config: the tagged union of sources, its validation, and fields that were removed."""

from __future__ import annotations

import pytest
from forkrl.orchestrator.data import (
    ArithmeticData,
    HFDatasetData,
    JsonlData,
    ParquetData,
    parse_data_config,
)
from pydantic import ValidationError


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


def test_removed_shuffle_seed_is_refused_naming_the_field_and_why():
    """data.shuffle_seed was never read (the stream is seeded by trainer.seed): an old recipe that
    sets it gets the reason, not a bare "extra inputs" error."""
    for section in ({"type": "arithmetic", "shuffle_seed": 3}, {"type": "jsonl", "path": "x", "shuffle_seed": 0}):
        with pytest.raises(ValidationError, match="shuffle_seed was removed: it was never read; the order "
                           "of the training prompts is seeded by trainer.seed"):
            parse_data_config(section)
    assert "shuffle_seed" not in ArithmeticData.model_fields
