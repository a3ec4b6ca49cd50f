#!/usr/bin/env bash
# Runs Ferry's fuzz targets for a bounded time each, one after another, and prints what each
# run did. A crash stops the script with a non-zero exit and names the input to keep.
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#        (default: 60 seconds; decode_frame, sanitize_name, decode_note and receiver_session)
# Needs: cargo install cargo-fuzz. Works on stable Rust: RUSTC_BOOTSTRAP=1 lets it accept the
# -Z flags cargo-fuzz passes (sanitizer, coverage), so no nightly toolchain is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_frame sanitize_name decode_note receiver_session)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi
export RUSTC_BOOTSTRAP=1

logs=fuzz/target/logs
mkdir -p "$logs"
for target in "${targets[@]}"; do
  # The corpus grows in fuzz/corpus (git-ignored); the seeds in fuzz/seeds are read only.
  mkdir -p "fuzz/corpus/$target"
  extra=()
  [ -f "fuzz/dicts/$target.dict" ] && extra+=("-dict=fuzz/dicts/$target.dict")
  log="$logs/$target.log"
  echo "== $target: ${seconds}s (log: $log)"
  status=0
  cargo fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 ||
    status=$?
  grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs|^stat::peak_rss' "$log" || true
  if [ "$status" -ne 0 ]; then
    grep -E "panicked at|^SUMMARY|ERROR: libFuzzer" -A1 "$log" || tail -n 40 "$log"
    grep -E 'Test unit written to' "$log" || true
    echo "== $target FAILED (exit $status): keep the input above as a regression test" \
      "in src/protocol/fuzz_regressions.rs" >&2
    exit 1
  fi
done
