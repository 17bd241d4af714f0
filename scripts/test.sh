#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, CPU only. Extra args go to pytest
# (e.g. `bash scripts/test.sh -m "not slow"` for the fast tier).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false RAY_DEDUP_LOGS=0
exec "${PYTHON:-python3}" -m pytest -q "$@"
