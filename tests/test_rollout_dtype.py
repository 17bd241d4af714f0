"""A CPU engine asked for bf16 warns where the CPU lacks bf16 dot products (AVX512-BF16 / AMX): there
bf16 generation is ~600x slower than fp32, where it has them 1.53x faster (bench/bench_rollout.py)."""
import logging

import torch

from forkrl.actors.config import RolloutConfig
from forkrl.actors.engines import warn_slow_cpu_dtype


def _cpu(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


def test_bf16_on_a_cpu_without_bf16_instructions_warns(monkeypatch, caplog):
    _cpu(monkeypatch, avx512_bf16=False, amx=False)
    with caplog.at_level(logging.WARNING, logger="forkrl.actors.engines"):
        assert warn_slow_cpu_dtype(RolloutConfig(dtype="bfloat16")) is True
    assert "rollout.dtype=bfloat16 on a CPU without AVX512-BF16 or AMX" in caplog.text


def test_no_warning_where_bf16_pays_or_is_not_asked_for(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="forkrl.actors.engines"):
        _cpu(monkeypatch, avx512_bf16=True, amx=False)
        assert warn_slow_cpu_dtype(RolloutConfig(dtype="bfloat16")) is False
        _cpu(monkeypatch, avx512_bf16=False, amx=True)
        assert warn_slow_cpu_dtype(RolloutConfig(dtype="bfloat16")) is False
        _cpu(monkeypatch, avx512_bf16=False, amx=False)
        assert warn_slow_cpu_dtype(RolloutConfig()) is False                  # auto = float32 on CPU
        assert warn_slow_cpu_dtype(RolloutConfig(dtype="float32")) is False
    assert caplog.text == ""
