#!/usr/bin/env bash
# Builds the libFuzzer targets under fuzz/ with the nightly toolchain (the flags cargo-fuzz
# uses: coverage instrumentation and AddressSanitizer) and runs each for a bounded time.
# A crash fails the script and leaves its input under fuzz/artifacts/TARGET/.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-30}
targets=(decode spec image)
# libFuzzer's instrumentation needs a nightly toolchain: install one if it is missing.
if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal || {
    echo "fuzz: no nightly toolchain and rustup cannot install one; the fuzz targets need it" >&2
    exit 1
  }
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks \
-Zsanitizer=address"
cargo +nightly build --locked --release --target "$triple" --bins
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "fuzz: $t for ${secs}s"
  log=$(mktemp)
  status=0
  "target/$triple/release/$t" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" "corpus/$t" $( [[ -d "seeds/$t" ]] && echo "seeds/$t" ) >"$log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::new_units_added)" "$log" || true
  if [[ $status -ne 0 ]]; then
    grep -E "panicked|SUMMARY|ERROR" "$log" >&2 || true
    rm -f "$log"
    echo "fuzz: $t crashed (status $status); its input is under fuzz/artifacts/$t/: add it to crates/ipc/tests/fuzz-found/" >&2
    exit 1
  fi
  rm -f "$log"
  rm -rf /tmp/polytropon-fuzz-*   # the image target's scratch directories
done
