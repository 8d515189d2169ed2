#!/usr/bin/env bash
# The whole test suite, as root (real mounts, whiteout device nodes, trusted xattrs).
# Installs what the tests need first. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "error: the test suite needs root (kernel overlayfs mounts, device nodes, trusted xattrs)" >&2
  exit 1
fi

scripts/install-deps.sh
scripts/cleanup-stale.sh

cargo build --workspace --all-targets --locked
# Lints: no undocumented unsafe anywhere, no warnings.
cargo clippy --workspace --all-targets --locked -- -D warnings
# FUSE over io_uring (Linux 6.14+, the fuse module's enable_uring): switched on for this run
# where the kernel has it, and restored however the run ends. Mounts take io_uring by default
# (`auto`) while it is on; the FUSE suites then run again with it off, on the classic transport.
uring_switch=/sys/module/fuse/parameters/enable_uring
if [[ -w $uring_switch ]]; then
  uring_was=$(cat "$uring_switch")
  trap 'echo "$uring_was" > "$uring_switch"' EXIT
  echo Y > "$uring_switch"
else
  echo "note: this kernel has no FUSE over io_uring; every FUSE test runs on the classic transport" >&2
fi
cargo test --workspace --locked -- --test-threads=2
if [[ -w $uring_switch ]]; then
  echo N > "$uring_switch"
  # The union oracle through the FUSE mount, the FUSE real-program tests, fsx on the FUSE path
  # and the kill -9 tests, on the classic transport.
  cargo test --locked --test union_oracle fuse_mount -- --test-threads=2
  cargo test --locked --test fuse_programs -- --test-threads=2
  cargo test --locked --test integrity random_io_matches_the_model_on_the_fuse -- --test-threads=2
  cargo test --locked --test hostile_tenant kill_9 -- --test-threads=2
  cargo test --locked --test reliability killed_service -- --test-threads=2
  echo "$uring_was" > "$uring_switch"
fi
# The shared-memory queue, model-checked with loom (own target dir: the cfg changes every hash).
RUSTFLAGS="--cfg loom" cargo test -p polytropon-ipc --test loom --release --locked --target-dir target/loom
# The request decoder under libFuzzer (nightly toolchain, AddressSanitizer), bounded.
scripts/fuzz.sh 30
