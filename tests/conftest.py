"""Tests run against the installed package (`pip install -e .`: imports are `forkrl.<role>`); no
sys.path patching. Helper modules beside the tests (tiny_model, test_rewards_userfns) are
importable because pytest's default rootdir-less "prepend" import mode puts tests/ first."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))
