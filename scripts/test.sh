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
cargo test --workspace --locked -- --test-threads=2
# The shared-memory queue, model-checked with loom (own target dir: the cfg changes every hash).
RUSTFLAGS="--cfg loom" cargo test -p polytropon-ipc --test loom --release --locked --target-dir target/loom
# The request decoder under libFuzzer (nightly toolchain, AddressSanitizer), bounded.
scripts/fuzz.sh 30
