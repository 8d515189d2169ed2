#!/usr/bin/env bash
# The main job, end to end, on the embedded default (local backend).
# Until `exec` lands (issue 6) the deepest piece that works is the union libservice over local
# branches, driven directly: two cloned instances over one shared read-only image.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
echo "== polytropon --help (commands not yet landed exit 2 with 'not implemented yet')"
./target/release/polytropon --help | sed -n '/^Commands:/,/^$/p'
echo "== union + local libservices on real directories"
cargo run --release --locked --quiet --example union_demo
