#!/usr/bin/env bash
# The one test command: starts the test environment, then format check, clippy and the tests.
#
#   scripts/test.sh                   everything
#   scripts/test.sh probe_           only tests whose name holds "probe_" (args go to cargo test)
#   scripts/test.sh -p medic -- --nocapture
#   MEDIC_SKIP_LINT=1 scripts/test.sh  skip fmt and clippy (quicker local runs)
#
# Every step runs even when an earlier one failed (only a failed environment stops it early);
# the exit code is non-zero when any failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

section() {
  printf '\n==================== %s ====================\n' "$*"
}

section "test environment: scripts/testenv.sh up"
if ! scripts/testenv.sh up; then
  echo "test.sh: the test environment did not come up (see above); no tests were run" >&2
  exit 1
fi
eval "$(scripts/testenv.sh env)"
scripts/testenv.sh env | sed 's/^/  /'

# Split the arguments: before `--` they go to cargo, after it to the test binaries.
cargo_args=()
test_args=()
seen_dashes=0
for arg in "$@"; do
  if ((seen_dashes)); then
    test_args+=("$arg")
  elif [[ "$arg" == "--" ]]; then
    seen_dashes=1
  else
    cargo_args+=("$arg")
  fi
done
# Four test threads unless the caller chose.
threads_given=0
for arg in "${test_args[@]+"${test_args[@]}"}"; do
  [[ "$arg" == --test-threads* ]] && threads_given=1
done
((threads_given)) || test_args+=("--test-threads=4")

failed=()

# run NAME CMD...: run one step, remember its failure.
run() {
  local name="$1"
  shift
  section "$name: $*"
  local t0=$SECONDS rc=0
  "$@" || rc=$?
  if ((rc == 0)); then
    echo "--- $name: ok ($((SECONDS - t0))s)"
  else
    echo "--- $name: FAILED (exit $rc, $((SECONDS - t0))s)"
    failed+=("$name")
  fi
}

if [[ "${MEDIC_SKIP_LINT:-}" == 1 ]]; then
  section "fmt, clippy: skipped (MEDIC_SKIP_LINT=1)"
else
  run fmt cargo fmt --all -- --check
  run clippy cargo clippy --workspace --all-targets -- -D warnings
fi
# cargo test, its output also kept in a log to count the results for the summary line.
# --no-fail-fast: one failing test binary must not hide how the others fare.
TEST_LOG="$ROOT/.testenv/logs/cargo-test.log"
cargo_test() {
  echo "+ cargo test --workspace --no-fail-fast ${cargo_args[*]+"${cargo_args[*]}"} -- ${test_args[*]}"
  cargo test --workspace --no-fail-fast "${cargo_args[@]+"${cargo_args[@]}"}" -- "${test_args[@]}" 2>&1 | tee "$TEST_LOG"
}
run test cargo_test

section "summary"
if ((${#failed[@]})); then
  echo "FAILED steps: ${failed[*]}"
else
  echo "all steps passed"
fi
# Last, one plain line with the totals over all test binaries and doc-tests (ignored = skipped).
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i + 1) ~ /^passed/) p += $i
         if ($(i + 1) ~ /^failed/) f += $i
         if ($(i + 1) ~ /^ignored/) s += $i
       }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$TEST_LOG"
if ((${#failed[@]})); then
  exit 1
fi
