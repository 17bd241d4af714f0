#!/usr/bin/env bash
# Set up, prepare the offline default model, and run the default job (or the recipe given).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
forkrl models prepare smollm2-135m
exec forkrl train "${1:-recipes/default.yaml}" "${@:2}"
