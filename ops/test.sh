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

# Fuzz the parse/verify path for a bounded time (FUZZ_SECONDS per target;
# 0 skips). cargo-fuzz needs nightly flags, which RUSTC_BOOTSTRAP allows on
# the stable toolchain.
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
if [ "$FUZZ_SECONDS" != 0 ]; then
  echo "== fuzz (${FUZZ_SECONDS}s per target)"
  command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
  export RUSTC_BOOTSTRAP=1
  fuzz_log="$(mktemp)"
  for target in canonical_json pdu_ingest; do
    if ! (cd proto && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz" \
      cargo fuzz run -O "$target" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048) \
      >"$fuzz_log" 2>&1; then
      tail -n 60 "$fuzz_log"
      echo "fuzz target $target failed; the input is under proto/fuzz/artifacts/$target"
      exit 1
    fi
    echo "$target: $(grep -E '^Done [0-9]+ runs' "$fuzz_log")"
  done
  unset RUSTC_BOOTSTRAP
fi
