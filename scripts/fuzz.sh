#!/usr/bin/env bash
# Fuzzes medic's configuration and label parsers for a bounded time (issue 8): every target in
# fuzz/ runs for SECONDS_PER_TARGET seconds and must find no panic, crash, timeout or OOM.
#
#   scripts/fuzz.sh                 60 s per target
#   scripts/fuzz.sh 600             ten minutes per target
#   scripts/fuzz.sh 30 probe_yaml   only the named targets
#
# Installs cargo-fuzz when it is missing. cargo-fuzz needs nightly-only compiler flags
# (sanitizers, coverage instrumentation); the stable toolchain accepts them with
# RUSTC_BOOTSTRAP=1, which is set for the fuzz builds only.
#
# Inputs the fuzzer finds interesting stay in fuzz/corpus/<target> (not committed) and make the
# next run start further; the committed seeds are fuzz/seeds/<target>. A finding is saved under
# fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz <target> fuzz/artifacts/<target>/<file>
# and add it as a unit test next to the parser when it is fixed.
#
# Environment:
#   MEDIC_FUZZ_JOBS   parallel compile jobs (cargo's default when unset)
#   MEDIC_FUZZ_RSS_MB memory limit per target in MB (default 2048)
#   MEDIC_FUZZ_TIMEOUT_S  one input taking longer is a finding (default 10)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECONDS_PER_TARGET="${1:-60}"
shift || true
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || ((SECONDS_PER_TARGET < 1)); then
  echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number of seconds, got '$SECONDS_PER_TARGET'" >&2
  exit 2
fi
RSS_MB="${MEDIC_FUZZ_RSS_MB:-2048}"
TIMEOUT_S="${MEDIC_FUZZ_TIMEOUT_S:-10}"
CARGO_FUZZ_VERSION="0.13.2"
FUZZ_DIR="$ROOT/fuzz"
export RUSTC_BOOTSTRAP=1
if [[ -n "${MEDIC_FUZZ_JOBS:-}" ]]; then
  export CARGO_BUILD_JOBS="$MEDIC_FUZZ_JOBS"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

if (($#)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir "$FUZZ_DIR")
fi
if ((${#targets[@]} == 0)); then
  echo "fuzz.sh: no fuzz targets found in $FUZZ_DIR" >&2
  exit 2
fi

# Release build with debug assertions and overflow checks (an overflow is a finding), and
# AddressSanitizer: the YAML parser underneath is a translation of C's libyaml with unsafe code.
build_flags=(-O --debug-assertions --fuzz-dir "$FUZZ_DIR")
echo "fuzz.sh: building ${targets[*]}"
t0=$SECONDS
for target in "${targets[@]}"; do
  cargo fuzz build "${build_flags[@]}" "$target"
done
echo "fuzz.sh: built in $((SECONDS - t0)) s"

LOG_DIR="$FUZZ_DIR/logs"
mkdir -p "$LOG_DIR"
summaries=()
failed=()
for target in "${targets[@]}"; do
  corpus="$FUZZ_DIR/corpus/$target"
  artifacts="$FUZZ_DIR/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  seed_dirs=()
  [[ -d "$FUZZ_DIR/seeds/$target" ]] && seed_dirs+=("$FUZZ_DIR/seeds/$target")
  log="$LOG_DIR/$target.log"
  echo "fuzz.sh: $target for ${SECONDS_PER_TARGET}s (log: ${log#"$ROOT"/})"
  # Artifacts already there are from an earlier run: only new ones count as this run's findings.
  before="$(find "$artifacts" -type f | sort)"
  t0=$SECONDS
  rc=0
  # New interesting inputs go to the first directory (corpus/), the seeds are only read;
  # cargo-fuzz saves findings in fuzz/artifacts/<target>/.
  cargo fuzz run "${build_flags[@]}" "$target" "$corpus" "${seed_dirs[@]}" -- \
    -max_total_time="$SECONDS_PER_TARGET" \
    -rss_limit_mb="$RSS_MB" \
    -timeout="$TIMEOUT_S" \
    -dict="$FUZZ_DIR/medic.dict" \
    -print_final_stats=1 >"$log" 2>&1 || rc=$?
  elapsed=$((SECONDS - t0))

  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  # libFuzzer's status lines end in "... cov: N ft: N corp: N/Ns ...": take the last one.
  cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1)"
  new_artifacts="$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort) | sed '/^$/d')"
  if ((rc != 0)) || [[ -n "$new_artifacts" ]]; then
    failed+=("$target")
    # A panic's message is on the line after "panicked at"; libFuzzer and ASan name timeouts,
    # OOMs and memory errors on an "ERROR:" line.
    kind="$(awk '/panicked at/ { getline msg; sub(/.*panicked at /, ""); print "panic at " $0 " " msg; exit }
                 /ERROR: (libFuzzer|AddressSanitizer)/ { sub(/.*ERROR: /, ""); print; exit }' "$log")"
    summaries+=("FAIL $target: ${kind:-exit $rc}; runs ${runs:-?}; ${cov:-no coverage line}; ${elapsed}s; artifact: ${new_artifacts:-none (see ${log#"$ROOT"/})}")
    echo "--- $target: FAILED (exit $rc); from ${log#"$ROOT"/}:"
    grep -m1 -A20 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" || tail -20 "$log"
  else
    summaries+=("ok   $target: runs ${runs:-?}; ${cov:-no coverage line}; ${elapsed}s")
  fi
done

echo
echo "fuzz.sh: summary (${SECONDS_PER_TARGET}s per target)"
printf '  %s\n' "${summaries[@]}"
if ((${#failed[@]})); then
  echo "fuzz.sh: findings in: ${failed[*]}; each artifact replays with"
  echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -O -a <target> <artifact>"
  exit 1
fi
echo "fuzz.sh: no findings"
