#!/usr/bin/env bash
# Federation throughput between two servers on this machine: two Myelins,
# then two Synapses (SQLite each), federating over TLS on loopback. Senders
# on the first server, observers long-polling on the second, which joined
# the room over federation (see ops/loadgen/src/federation.rs).
#
#   bash ops/bench/federation.sh [both|myelin|synapse]
#
# Both servers are named by IP literal and port (127.0.0.1:<port>), so no
# DNS is involved, and carry certificates from a throw-away CA that both
# trust. Sizes from the environment: USERS (10), MESSAGES (50 per user),
# OBSERVERS (3). Reports land in $BENCH_DIR (/var/tmp/myelin-bench); ports
# from PORT_BASE (38100).
# FED_PERF=<file> (opt-in, Myelin only) records a CPU profile of the
# receiving server with `perf record` while the load generator runs; build
# with CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for readable stacks.
set -euo pipefail
cd "$(dirname "$0")/../.."

which_servers="${1:-both}"
case "$which_servers" in both|myelin|synapse) ;; *) echo "usage: $0 [both|myelin|synapse]" >&2; exit 2 ;; esac
USERS="${USERS:-10}" MESSAGES="${MESSAGES:-50}" OBSERVERS="${OBSERVERS:-3}"
bench="${BENCH_DIR:-/var/tmp/myelin-bench}/federation"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/myelin-target}"
secret="bench-shared-secret"
# PORT_BASE moves all four ports, so two runs can share a machine.
base="${PORT_BASE:-38100}"
client_ports=($((base + 8)) $((base + 9)))
fed_ports=($((base + 48)) $((base + 49)))
mkdir -p "$bench"

echo "== building Myelin and the load generator (release)"
cargo build --release --locked -p myelin-homeserver -p myelin-loadgen
myelin="$CARGO_TARGET_DIR/release/myelin"
loadgen="$CARGO_TARGET_DIR/release/loadgen"
venv=""
if [ "$which_servers" != myelin ]; then
  venv="$(bash ops/synapse/install.sh)"
fi

# --- a CA and one certificate per server (IP SAN 127.0.0.1) -------------------
ca="$bench/ca"
rm -rf "$ca" && mkdir -p "$ca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=myelin federation bench CA" -keyout "$ca/ca.key" -out "$ca/ca.pem" 2>/dev/null
for i in 0 1; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$ca/server$i.key" -out "$ca/server$i.csr" 2>/dev/null
  openssl x509 -req -in "$ca/server$i.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
    -CAcreateserial -days 2 -out "$ca/server$i.crt" \
    -extfile <(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') 2>/dev/null
done

pids=()
stop_servers() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
trap stop_servers EXIT

wait_ready() {
  local port="$1" pid="$2"
  for _ in $(seq 1 120); do
    if python3 - "$port" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_matrix/client/versions", timeout=2)
PY
    if ! kill -0 "$pid" 2>/dev/null; then echo "a server exited; see $bench" >&2; return 1; fi
    sleep 0.5
  done
  echo "a server did not come up; see $bench" >&2
  return 1
}

start_myelin() {
  local i="$1" dir="$bench/myelin$1"
  rm -rf "$dir" && mkdir -p "$dir"
  MYELIN__SERVER__NAME="127.0.0.1:${fed_ports[$i]}" \
  MYELIN__SERVER__DATA_DIR="$dir" \
  MYELIN__LISTEN__CLIENT="127.0.0.1:${client_ports[$i]}" \
  MYELIN__LISTEN__FEDERATION="127.0.0.1:${fed_ports[$i]}" \
  MYELIN__FEDERATION__TLS_CERTIFICATE_PATH="$ca/server$i.crt" \
  MYELIN__FEDERATION__TLS_PRIVATE_KEY_PATH="$ca/server$i.key" \
  MYELIN__FEDERATION__CA_FILE="$ca/ca.pem" \
  MYELIN__FEDERATION__ALLOW_PRIVATE_ADDRESSES=true \
  MYELIN__REGISTRATION__SHARED_SECRET="$secret" \
  MYELIN__RATE_LIMITS__MESSAGE__PER_SECOND=0 \
  MYELIN__RATE_LIMITS__REGISTRATION__PER_SECOND=0 \
  MYELIN__RATE_LIMITS__LOGIN__PER_SECOND=0 \
  MYELIN__LOGGING__FILTER=warn \
    "$myelin" serve >"$dir/stdout.log" 2>&1 &
  pids+=($!)
}

start_synapse() {
  local i="$1" dir="$bench/synapse$1"
  local unlimited="{per_second: 100000, burst_count: 100000}"
  rm -rf "$dir" && mkdir -p "$dir"
  # Loopback must be off Synapse's federation blacklist for IP-literal names
  # (its whitelist is not consulted for them); presence off as on Myelin's
  # side of the single-server benchmark.
  cat > "$dir/homeserver.yaml" <<YAML
server_name: "127.0.0.1:${fed_ports[$i]}"
pid_file: $dir/homeserver.pid
listeners:
  - {port: ${client_ports[$i]}, bind_addresses: ['127.0.0.1'], type: http, tls: false, resources: [{names: [client], compress: false}]}
  - {port: ${fed_ports[$i]}, bind_addresses: ['127.0.0.1'], type: http, tls: true, resources: [{names: [federation, keys], compress: false}]}
tls_certificate_path: $ca/server$i.crt
tls_private_key_path: $ca/server$i.key
federation_verify_certificates: true
federation_custom_ca_list: ["$ca/ca.pem"]
ip_range_blacklist: ['192.0.2.0/24']
database:
  name: sqlite3
  args: {database: $dir/homeserver.db}
log_config: $dir/log.yaml
media_store_path: $dir/media
signing_key_path: $dir/signing.key
registration_shared_secret: $secret
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
presence: {enabled: false}
rc_message: $unlimited
rc_registration: $unlimited
rc_login:
  address: $unlimited
  account: $unlimited
  failed_attempts: $unlimited
rc_joins:
  local: $unlimited
  remote: $unlimited
rc_joins_per_room: $unlimited
rc_room_creation: $unlimited
rc_federation: {window_size: 1000, sleep_limit: 10000, sleep_delay: 0, reject_limit: 10000, concurrent: 100}
YAML
  cat > "$dir/log.yaml" <<YAML
version: 1
formatters: {plain: {format: '%(asctime)s %(levelname)s %(name)s %(message)s'}}
handlers: {file: {class: logging.FileHandler, filename: $dir/homeserver.log, formatter: plain}}
root: {level: WARNING, handlers: [file]}
disable_existing_loggers: false
YAML
  "$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" --generate-keys >/dev/null
  "$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" >"$dir/stdout.log" 2>&1 &
  pids+=($!)
}

run_pair() {
  local kind="$1"
  rm -f "$bench/$kind.json"
  "start_$kind" 0
  "start_$kind" 1
  wait_ready "${client_ports[0]}" "${pids[0]}"
  wait_ready "${client_ports[1]}" "${pids[1]}"
  echo "== $kind -> $kind: $USERS senders x $MESSAGES messages, $OBSERVERS remote observers; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  local perf_pid=""
  if [ -n "${FED_PERF:-}" ] && [ "$kind" = myelin ]; then
    perf record -F 499 --call-graph dwarf -o "$FED_PERF" -p "${pids[1]}" >"$bench/perf.log" 2>&1 &
    perf_pid=$!
  fi
  "$loadgen" --url "http://127.0.0.1:${client_ports[0]}" --shared-secret "$secret" --pid "${pids[0]}" \
    --json "$bench/$kind.json" \
    federation --remote-url "http://127.0.0.1:${client_ports[1]}" --remote-pid "${pids[1]}" \
    --users "$USERS" --messages "$MESSAGES" --observers "$OBSERVERS"
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    echo "== profile of the receiving server: $FED_PERF"
  fi
  stop_servers
}

[ "$which_servers" = synapse ] || run_pair myelin
[ "$which_servers" = myelin ] || run_pair synapse

python3 - "$bench" "$which_servers" <<'PY'
import json, os, sys
bench, which = sys.argv[1], sys.argv[2]
rows = [("delivered messages/s", lambda r: r["messages_per_second"]),
        ("median latency (ms)", lambda r: r["latency_ms"]["median"]),
        ("p99 latency (ms)", lambda r: r["latency_ms"]["p99"]),
        ("missing", lambda r: r["latency_ms"]["missing"]),
        ("origin CPU ms/message", lambda r: r["origin"]["cpu_ms_per_message"]),
        ("remote CPU ms/message", lambda r: r["remote"]["cpu_ms_per_message"]),
        ("origin peak RSS (MiB)", lambda r: r["origin"]["peak_rss_bytes"] / 2**20),
        ("remote peak RSS (MiB)", lambda r: r["remote"]["peak_rss_bytes"] / 2**20)]
kinds = ("synapse", "myelin") if which == "both" else (which,)
reports = {k: json.load(open(f"{bench}/{k}.json")) for k in kinds}
print(f"{'federation':<24}" + "".join(f"{k:>12}" for k in reports))
for name, get in rows:
    print(f"{name:<24}" + "".join(f"{get(r):>12.1f}" for r in reports.values()))
PY
