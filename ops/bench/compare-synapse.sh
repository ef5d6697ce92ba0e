#!/usr/bin/env bash
# Runs the same load against Synapse and Myelin on this machine, one after
# the other, on the same kind of database, and prints the ratios against
# the goals. Installs Synapse (PyPI matrix-synapse, in a virtualenv) and,
# for PostgreSQL, a private cluster on 127.0.0.1:5434.
#
#   bash ops/bench/compare-synapse.sh [sqlite|postgres]
#
# Sizes come from the environment: USERS (20), MESSAGES (50 per user),
# OBSERVERS (5), ROOMS (50), ROOM_MESSAGES (20), REPEATS (5). Reports land
# in $BENCH_DIR (/var/tmp/myelin-bench) as JSON. PRESENCE=on runs both
# servers with presence on (their default); it is off on both otherwise,
# since the observers' filter drops presence.
#
# MYELIN_ONLY=1 runs only Myelin's half and compares it with Synapse's last
# reports in $BENCH_DIR (a couple of minutes instead of ten, for iterating).
# MYELIN_PERF=<file> records a `perf record --call-graph dwarf` profile of
# Myelin's messages phase into <file>.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"

db_kind="${1:-sqlite}"
case "$db_kind" in sqlite|postgres) ;; *) echo "usage: $0 [sqlite|postgres]" >&2; exit 2 ;; esac
PRESENCE="${PRESENCE:-off}"
case "$PRESENCE" in on) presence_enabled=true ;; off) presence_enabled=false ;;
  *) echo "PRESENCE must be on or off" >&2; exit 2 ;; esac
USERS="${USERS:-20}" MESSAGES="${MESSAGES:-50}" OBSERVERS="${OBSERVERS:-5}"
ROOMS="${ROOMS:-50}" ROOM_MESSAGES="${ROOM_MESSAGES:-20}" REPEATS="${REPEATS:-5}"
bench="${BENCH_DIR:-/var/tmp/myelin-bench}"
myelin_only="${MYELIN_ONLY:-0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/myelin-target}"
secret="bench-shared-secret"
port=38008
pg_port=5434
mkdir -p "$bench"

# --- what the run needs -----------------------------------------------------
if [ "$myelin_only" = 1 ]; then
  for scenario in messages initial-sync; do
    if [ ! -f "$bench/synapse-$db_kind-$scenario.json" ]; then
      echo "MYELIN_ONLY=1 needs Synapse's reports from a full run in $bench" >&2; exit 2
    fi
  done
  synapse_version="$(cat "$bench/synapse-version" 2>/dev/null || echo '(last run)')"
else
  venv="$(bash ops/synapse/install.sh)"
  synapse_version="$("$venv/bin/python" -c 'import synapse; print(synapse.__version__)')"
  echo "$synapse_version" > "$bench/synapse-version"
fi
echo "== Synapse $synapse_version; presence $PRESENCE on both servers"
echo "== building Myelin and the load generator (release)"
cargo build --release --locked -p myelin-homeserver -p myelin-loadgen
myelin="$CARGO_TARGET_DIR/release/myelin"
loadgen="$CARGO_TARGET_DIR/release/loadgen"

pg_pid=""
pg_bin=""
if [ "$db_kind" = postgres ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  pg_dir="$bench/pg"
  if [ -f "$pg_dir/data/postmaster.pid" ]; then
    su postgres -c "$pg_bin/pg_ctl -D $pg_dir/data -m fast stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$pg_dir" && mkdir -p "$pg_dir" && chown postgres "$pg_dir"
  su postgres -c "$pg_bin/initdb -D $pg_dir/data --auth=trust -U postgres" >/dev/null
  # Durable like production (fsync on): the benchmark measures real commits.
  su postgres -c "$pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/log -w start \
    -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1'" >/dev/null
  pg_pid="$(head -n 1 "$pg_dir/data/postmaster.pid")"
  for db in synapse myelin; do
    "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres \
      --encoding=UTF8 --locale=C --template=template0 "$db"
  done
fi

server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  stop_server
  if [ -n "$pg_bin" ]; then
    su postgres -c "$pg_bin/pg_ctl -D $bench/pg/data -m fast stop" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

wait_ready() {
  for _ in $(seq 1 120); do
    if python3 - "$port" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_matrix/client/versions", timeout=2)
PY
    if ! kill -0 "$server_pid" 2>/dev/null; then echo "the server exited" >&2; return 1; fi
    sleep 0.5
  done
  echo "the server did not come up" >&2
  return 1
}

run_load() {
  local name="$1"
  local db_arg=()
  [ -n "$pg_pid" ] && db_arg=(--db-pid "$pg_pid")
  echo "== $name: messages ($USERS users x $MESSAGES messages, $OBSERVERS observers); load: $(cut -d' ' -f1-3 /proc/loadavg)"
  local perf_arg=()
  [ "$name" = myelin ] && [ -n "${MYELIN_PERF:-}" ] && perf_arg=(--perf-record "$MYELIN_PERF")
  "$loadgen" --url "http://127.0.0.1:$port" --shared-secret "$secret" --pid "$server_pid" "${db_arg[@]}" \
    --json "$bench/$name-$db_kind-messages.json" "${perf_arg[@]}" \
    messages --users "$USERS" --messages "$MESSAGES" --observers "$OBSERVERS" >/dev/null
  echo "== $name: initial sync ($ROOMS rooms x $ROOM_MESSAGES messages); load: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$loadgen" --url "http://127.0.0.1:$port" --shared-secret "$secret" --pid "$server_pid" "${db_arg[@]}" \
    --json "$bench/$name-$db_kind-initial-sync.json" \
    initial-sync --rooms "$ROOMS" --messages-per-room "$ROOM_MESSAGES" --repeats "$REPEATS" >/dev/null
}

# --- Synapse ------------------------------------------------------------------
if [ "$myelin_only" != 1 ]; then
syn="$bench/synapse"
rm -rf "$syn" && mkdir -p "$syn"
if [ "$db_kind" = postgres ]; then
  database="database:
  name: psycopg2
  args: {user: postgres, host: 127.0.0.1, port: $pg_port, database: synapse, cp_min: 5, cp_max: 10}"
else
  database="database:
  name: sqlite3
  args: {database: $syn/homeserver.db}"
fi
# Rate limits raised so that throughput is what is measured; presence as
# PRESENCE says, the same on both servers.
cat > "$syn/homeserver.yaml" <<YAML
server_name: bench.test
pid_file: $syn/homeserver.pid
listeners:
  - {port: $port, bind_addresses: ['127.0.0.1'], type: http, tls: false, resources: [{names: [client], compress: false}]}
$database
log_config: $syn/log.yaml
media_store_path: $syn/media
signing_key_path: $syn/signing.key
registration_shared_secret: $secret
report_stats: false
trusted_key_servers: []
presence: {enabled: $presence_enabled}
rc_message: {per_second: 100000, burst_count: 100000}
rc_registration: {per_second: 100000, burst_count: 100000}
rc_login:
  address: {per_second: 100000, burst_count: 100000}
  account: {per_second: 100000, burst_count: 100000}
  failed_attempts: {per_second: 100000, burst_count: 100000}
rc_joins:
  local: {per_second: 100000, burst_count: 100000}
  remote: {per_second: 100000, burst_count: 100000}
rc_joins_per_room: {per_second: 100000, burst_count: 100000}
rc_room_creation: {per_second: 100000, burst_count: 100000}
rc_invites:
  per_room: {per_second: 100000, burst_count: 100000}
  per_user: {per_second: 100000, burst_count: 100000}
YAML
cat > "$syn/log.yaml" <<YAML
version: 1
formatters: {plain: {format: '%(asctime)s %(levelname)s %(name)s %(message)s'}}
handlers: {file: {class: logging.FileHandler, filename: $syn/homeserver.log, formatter: plain}}
root: {level: WARNING, handlers: [file]}
disable_existing_loggers: false
YAML
"$venv/bin/python" -m synapse.app.homeserver -c "$syn/homeserver.yaml" --generate-keys >/dev/null
"$venv/bin/python" -m synapse.app.homeserver -c "$syn/homeserver.yaml" >"$syn/stdout.log" 2>&1 &
server_pid=$!
wait_ready
run_load synapse
stop_server
fi

# --- Myelin -------------------------------------------------------------------
mye="$bench/myelin"
rm -rf "$mye" && mkdir -p "$mye"
db_url=""
min_connections=1
if [ "$db_kind" = postgres ]; then
  db_url="postgres://postgres@127.0.0.1:$pg_port/myelin"
  # Synapse's pool above keeps 5 connections open (cp_min): so does this one.
  min_connections=5
fi
MYELIN__SERVER__NAME=bench.test \
MYELIN__SERVER__DATA_DIR="$mye" \
MYELIN__LISTEN__CLIENT="127.0.0.1:$port" \
MYELIN__DATABASE__URL="$db_url" \
MYELIN__DATABASE__MIN_CONNECTIONS="$min_connections" \
MYELIN__REGISTRATION__SHARED_SECRET="$secret" \
MYELIN__RATE_LIMITS__MESSAGE__PER_SECOND=0 \
MYELIN__RATE_LIMITS__REGISTRATION__PER_SECOND=0 \
MYELIN__RATE_LIMITS__LOGIN__PER_SECOND=0 \
MYELIN__PRESENCE__ENABLED="$presence_enabled" \
MYELIN__LOGGING__FILTER=warn \
  "$myelin" serve >"$mye/stdout.log" 2>&1 &
server_pid=$!
wait_ready
run_load myelin
stop_server

# --- ratios -------------------------------------------------------------------
python3 "$root/ops/bench/ratios.py" "$bench" "$db_kind" "$synapse_version"
