#!/usr/bin/env bash
# Mutation testing of the pure core: plant one small bug at a time, run the fast tests that cover it,
# and list the bugs ("gremlins") that no test noticed. A habit for reviewers, NOT part of CI (tens of
# minutes on two cores). Usage:
#   bash scripts/mutation.sh                  # every module below
#   bash scripts/mutation.sh losses config    # modules whose path contains one of the words
# Survivors that cannot be killed (equivalent mutants) are listed, with the reason, in
# scripts/mutation_equivalent.md; the report marks them and the exit status is 1 only when a survivor
# is not listed there.
#
# Tool: pytest-gremlins 1.12.2 (PyPI), installed on demand into .cache/mutation/venv (gitignored, built
# with --system-site-packages so it sees the project's torch etc.); never a dependency of the project
# or CI. Why this one: (1) it mutates by "mutation switching" through an import hook, in memory: it
# never rewrites a source file (cosmic-ray rewrites files in place, which would plant bugs under the
# feet of everyone testing this checkout), and we run on a snapshot copy anyway; (2) it mutates inside
# decorated functions: mutmut 3.8.1 skips every decorated function, i.e. our registered losses
# (@register_policy_loss), advantage estimators (@register_advantage) and pydantic validators, the very
# code this is meant to check; (3) its instrument-once design lets scripts/mutation_run.py fork one
# warm interpreter per mutant and run only the tests that executed the mutated line: the tool's own
# runner starts a fresh interpreter per mutant, 5-50 s each with torch on a busy 2-core machine.
# Its operator set is small (comparison, arithmetic, boolean, boundary +-1, return None; no constant
# or string mutation): constants such as SENT's 2 beta / 0.5 beta are pinned by literal-value tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
TOOL="pytest-gremlins==1.12.2"
VENV=${MUTATION_VENV:-$ROOT/.cache/mutation/venv}
OUT=${MUTATION_OUT:-$ROOT/.cache/mutation/reports}
TIMEOUT=${MUTATION_MUTANT_TIMEOUT:-120}

# module | the fast test files that exercise it (space separated)
MODULES=(
  "learner/losses.py|tests/test_losses.py"
  "learner/selectors.py|tests/test_losses.py"
  "learner/aggregation.py|tests/test_losses.py"
  "learner/entropy.py|tests/test_entropy.py"
  "orchestrator/advantages.py|tests/test_advantages.py"
  "orchestrator/sampling.py|tests/test_sampling.py"
  "orchestrator/config.py|tests/test_config.py"
  "learner/config.py|tests/test_config.py"
  "learner/loss_config.py|tests/test_config.py tests/test_losses.py"
  "orchestrator/batching.py|tests/test_batching.py"
  "learner/packing.py|tests/test_learner_packing.py"
  "orchestrator/rollout_queue.py|tests/test_rollout_queue.py tests/test_trainer_phases.py"
  "orchestrator/layout.py|tests/test_layout.py"
  "common/episode.py|tests/test_layout.py tests/test_batching.py"
  "orchestrator/evaluation.py|tests/test_evaluation.py"
  "orchestrator/entropy_control.py|tests/test_entropy_control.py tests/test_entropy_control_plant.py tests/test_trainer_phases.py"
  "orchestrator/tracking.py|tests/test_orchestrator_tracking.py"
  "orchestrator/entropy_law.py|tests/test_entropy_law.py"
  "learner/mechanism.py|tests/test_learner_mechanism.py"
  "orchestrator/resolve.py|tests/test_resolve.py"
  "orchestrator/step_metrics.py|tests/test_step_metrics.py"
  "orchestrator/recovery.py|tests/test_recovery.py"
  "orchestrator/data/arithmetic.py|tests/test_data_arithmetic.py tests/test_data_split.py"
  "orchestrator/checkpoint.py|tests/test_checkpoint.py"
  "rewards/ledger.py|tests/test_rewards_ledger.py"
  "rewards/math_verifier.py|tests/test_rewards_math.py tests/test_rewards_math_adversarial.py"
  "rewards/math_extract.py|tests/test_rewards_math.py tests/test_rewards_math_adversarial.py"
  "rewards/math_guards.py|tests/test_rewards_math_guards.py tests/test_rewards_math_adversarial.py"
  "rewards/math_clean.py|tests/test_rewards_math_clean.py tests/test_rewards_math_adversarial.py"
  "rewards/math_words.py|tests/test_rewards_math_words.py tests/test_rewards_math_adversarial.py"
  "rewards/math_normalize.py|tests/test_rewards_math.py tests/test_rewards_math_adversarial.py"
  "rewards/math_equivalence.py|tests/test_rewards_math.py tests/test_rewards_math_adversarial.py"
  "rewards/code_verifier.py|tests/test_rewards_code_units.py tests/test_rewards_code.py tests/test_rewards_code_adversarial.py"
  "rewards/code_cases.py|tests/test_rewards_code_units.py"
  "rewards/code_records.py|tests/test_rewards_code_units.py"
)

if ! "$VENV/bin/python" -c "import pytest_gremlins" 2>/dev/null; then
  echo "installing $TOOL into $VENV (mutation testing only; not a project dependency)"
  "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q "$TOOL"
fi

# Run on a snapshot of the working tree (tracked + untracked, not ignored files), or of the commit
# MUTATION_REV names (e.g. MUTATION_REV=HEAD~1 for a before/after score): the tool's coverage files and
# reports stay out of the checkout, and edits made meanwhile do not mix into a run. The snapshot lives
# under .cache/ (gitignored), not /tmp, where sandbox clean-ups may sweep forkrl-* directories.
mkdir -p "$OUT" "$ROOT/.cache/mutation"
WORK=$(mktemp -d "$ROOT/.cache/mutation/run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ -n "${MUTATION_REV:-}" ]; then
  git archive "$MUTATION_REV" | tar -xf - -C "$WORK"
else
  git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$WORK"
fi

export TOKENIZERS_PARALLELISM=false DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
reports=()
for entry in "${MODULES[@]}"; do
  module=${entry%%|*}
  tests=${entry#*|}
  if [ $# -gt 0 ]; then
    hit=0
    for word in "$@"; do [[ $module == *"$word"* ]] && hit=1; done
    [ $hit = 1 ] || continue
  fi
  report="$OUT/$(echo "$module" | tr '/' '_' | sed 's/\.py$//').json"
  rm -f "$report"
  echo "=== $module  <-  $tests"
  # shellcheck disable=SC2086
  (cd "$WORK" && "$VENV/bin/python" "$ROOT/scripts/mutation_run.py" --module "$module" --tests $tests \
      --timeout "$TIMEOUT" --out "$report" > "$OUT/last.log" 2>&1) || true
  if [ -f "$report" ]; then
    reports+=("$module=$report")
    head -n 1 "$OUT/last.log"  # no pipe: under pipefail a closed pipe (SIGPIPE, rc 141) ended the whole run
  else
    echo "  no report: the baseline test run failed; tail of $OUT/last.log:"
    tail -20 "$OUT/last.log" | sed 's/^/  | /'
    reports+=("$module=")
  fi
done

rc=0
"$PY" "$ROOT/scripts/mutation_report.py" --root "$WORK" --equivalent "$ROOT/scripts/mutation_equivalent.md" \
  "${reports[@]}" || rc=$?
exit $rc
