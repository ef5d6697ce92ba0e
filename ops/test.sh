#!/usr/bin/env bash
# Runs Myelin's whole test suite on a fresh Debian machine (as root) or a
# developer's checkout: installs what the tests need, then formats-checks,
# lints and tests the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reuse one target directory across runs of fresh clones on the same machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/myelin-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== toolchain: $(rustc --version)"
echo "== format"
cargo fmt --all -- --check
echo "== lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo test --workspace --locked
