#!/usr/bin/env bash
# Set up, prepare the offline default model, and run the default job (or the recipe given).
# The console shows forkrl's own lines and the progress bar: setup's pip output goes to
# .cache/setup.log (printed in full when setup fails), the engines', DeepSpeed's and Ray's output to
# the run dir's logs/ (orchestrator/console.py). FORKRL_VERBOSE=1 (or logging.verbose=true) shows it all.
set -euo pipefail
cd "$(dirname "$0")/.."
verbose=$(printf '%s' "${FORKRL_VERBOSE:-}" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')
case "$verbose" in
  1|true|yes|on) bash scripts/setup.sh ;;
  *)
    mkdir -p .cache
    if ! bash scripts/setup.sh > .cache/setup.log 2>&1; then
      cat .cache/setup.log >&2
      echo "forkrl: setup failed (its output is above and in .cache/setup.log)" >&2
      exit 1
    fi
    grep '^forkrl setup ok' .cache/setup.log || true ;;
esac
forkrl models prepare smollm2-135m
exec forkrl train "${1:-recipes/default.yaml}" "${@:2}"
