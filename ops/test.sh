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

# PostgreSQL for the storage tests: a private cluster on 127.0.0.1:5433,
# started fresh for this run. MYELIN_TEST_POSTGRES tells the tests where it is.
start_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "== installing PostgreSQL"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  local dir=/var/tmp/myelin-pg
  if [ -f "$dir/data/postmaster.pid" ]; then
    su postgres -c "$bin/pg_ctl -D $dir/data -m immediate stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  chown postgres "$dir"
  su postgres -c "$bin/initdb -D $dir/data --auth=trust -U postgres" >/dev/null
  su postgres -c "$bin/pg_ctl -D $dir/data -l $dir/log -w start \
    -o '-p 5433 -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off'" >/dev/null
  export MYELIN_TEST_POSTGRES="postgres://postgres@127.0.0.1:5433"
  echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:5433"
}
if [ -n "${MYELIN_TEST_POSTGRES:-}" ]; then
  echo "== using PostgreSQL at $MYELIN_TEST_POSTGRES"
elif [ "$(id -u)" = 0 ]; then
  start_postgres
else
  echo "ops/test.sh: run as root so PostgreSQL can be installed and started," >&2
  echo "or set MYELIN_TEST_POSTGRES=postgres://user@host:port to use a running server." >&2
  exit 1
fi
# Synapse for the interop stories (homeserver/tests/it/synapse_interop.rs):
# installed once into a virtualenv; MYELIN_SYNAPSE_VENV tells the tests
# where. In CI a missing Synapse fails those stories instead of skipping them.
if [ -z "${MYELIN_SYNAPSE_VENV:-}" ]; then
  MYELIN_SYNAPSE_VENV="$(bash ops/synapse/install.sh)"
  export MYELIN_SYNAPSE_VENV
fi
echo "== Synapse $("$MYELIN_SYNAPSE_VENV/bin/python" -c 'import synapse; print(synapse.__version__)') in $MYELIN_SYNAPSE_VENV"
echo "== format"
cargo fmt --all -- --check
echo "== lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== monitoring kit"
if ! command -v promtool >/dev/null && [ "$(id -u)" = 0 ]; then
  # Debian's prometheus package carries promtool.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi
if command -v promtool >/dev/null; then
  bash ops/monitoring/check.sh
else
  echo "promtool not available (not root): skipping the promtool checks"
fi
echo "== tests"
cargo test --workspace --locked

# The matrix-sdk story (the SDK behind Element X) against the real binary.
# It is its own workspace with its own lockfile (matrix-sdk brings its own
# ruma, vodozemac and TLS stack), built in its own target directory so both
# builds stay reusable. It runs the `myelin` binary that `cargo test` above
# built for the server's own integration tests: a separate `cargo build`
# would resolve features without the dev-dependencies and rebuild much of
# the tree.
echo "== matrix-sdk end-to-end test"
export MYELIN_BIN="$CARGO_TARGET_DIR/debug/myelin"
[ -x "$MYELIN_BIN" ] || cargo test -p myelin-homeserver --locked --no-run
CARGO_TARGET_DIR="$CARGO_TARGET_DIR/sdk-tests" \
  cargo test --locked --manifest-path homeserver/sdk-tests/Cargo.toml

# The operator's kit beyond monitoring: the example nginx site in front of a
# running server, and the systemd unit.
echo "== operator's kit: nginx and systemd"
if [ "$(id -u)" = 0 ]; then
  for tool in nginx:nginx-light systemd-analyze:systemd; do
    command -v "${tool%%:*}" >/dev/null && continue
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tool#*:}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${tool#*:}" >/dev/null; }
  done
fi
if command -v nginx >/dev/null; then
  bash ops/nginx/check.sh
else
  echo "nginx not available (not root): skipping the nginx check"
fi
if command -v systemd-analyze >/dev/null; then
  bash ops/systemd/check.sh
else
  echo "systemd-analyze not available (not root): skipping the unit check"
fi

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
