#!/usr/bin/env bash
# Checks the example nginx site (ops/nginx/myelin.conf) for real: nginx must
# accept it as shipped (only the certificate paths, listen ports and upstream
# port are rewritten), and a running `myelin` behind it must answer clients
# through it: the client API, the .well-known delegation, /metrics hidden, a
# long-poll /sync held open, and the server's own JSON error for a body over
# its limit.
#
#   MYELIN_BIN=target/debug/myelin bash ops/nginx/check.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${MYELIN_BIN:?set MYELIN_BIN to a built myelin binary}"
work="$(mktemp -d)"
# nginx's workers drop to an unprivileged user when started as root; they
# must reach their temp directories (created by nginx) under here.
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "ops/nginx/check.sh: $*" >&2
  for log in "$work"/nginx/error.log "$work"/myelin.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
  done
  exit 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
https_port="$(free_port)"
client_port="$(free_port)"

# Self-signed certificates for both virtual hosts, where the site expects
# Let's Encrypt's.
for host in matrix.example.org example.org; do
  mkdir -p "$work/certs/$host"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=$host" -addext "subjectAltName=DNS:$host" \
    -keyout "$work/certs/$host/privkey.pem" -out "$work/certs/$host/fullchain.pem" 2>/dev/null
done

mkdir -p "$work/nginx"
sed -e "s#/etc/letsencrypt/live/#$work/certs/#" \
    -e "s#listen 443 #listen 127.0.0.1:$https_port #" \
    -e "/listen \[::\]:443/d" \
    -e "s#server 127.0.0.1:8008;#server 127.0.0.1:$client_port;#" \
    "$here/myelin.conf" >"$work/nginx/site.conf"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    include $work/nginx/site.conf;
}
EOF
nginx -t -q -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx/test.log" \
  || { cat "$work/nginx/test.log" >&2; fail "nginx rejects ops/nginx/myelin.conf"; }
# Warnings count as failures too, except newer nginx's preference for
# `http2 on;` over `listen ... http2` (which older ones need).
grep -v 'the "listen \.\.\. http2" directive is deprecated' "$work/nginx/test.log" \
  >"$work/nginx/warnings.log" || true
if [ -s "$work/nginx/warnings.log" ]; then
  cat "$work/nginx/warnings.log" >&2
  fail "nginx warns about ops/nginx/myelin.conf"
fi

cat >"$work/myelin.toml" <<EOF
[server]
name = "example.org"
data_dir = "$work/data"
public_baseurl = "https://matrix.example.org"
[listen]
client = "127.0.0.1:$client_port"
[limits]
max_request_bytes = 1048576
EOF
"$bin" --config "$work/myelin.toml" serve >"$work/myelin.log" 2>&1 &
pids+=($!)
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)

curl_to() { # host path [curl args...]
  local host="$1" path="$2"
  shift 2
  curl -sS --max-time 60 --cacert "$work/certs/$host/fullchain.pem" \
    --resolve "$host:$https_port:127.0.0.1" "$@" "https://$host:$https_port$path"
}

for _ in $(seq 100); do
  curl_to matrix.example.org /_matrix/client/versions -o /dev/null -f 2>/dev/null && break
  sleep 0.1
done
versions="$(curl_to matrix.example.org /_matrix/client/versions -f)" \
  || fail "the client API does not answer through nginx"
grep -q '"versions"' <<<"$versions" || fail "unexpected /versions answer: $versions"

server="$(curl_to example.org /.well-known/matrix/server -f)" || fail "no server .well-known"
[ "$server" = '{"m.server": "matrix.example.org:8448"}' ] || fail "server .well-known: $server"
client="$(curl_to example.org /.well-known/matrix/client -f)" || fail "no client .well-known"
grep -q '"base_url": "https://matrix.example.org"' <<<"$client" || fail "client .well-known: $client"

status="$(curl_to matrix.example.org /metrics -o /dev/null -w '%{http_code}')"
[ "$status" = 404 ] || fail "/metrics is exposed through nginx (HTTP $status)"

# A user, then a long-poll that nginx must hold open until the server
# answers (no buffering, no early answer).
register="$(curl_to matrix.example.org /_matrix/client/v3/register -f -X POST \
  -H 'Content-Type: application/json' \
  -d '{"username":"proxied","password":"a long enough password","auth":{"type":"m.login.dummy"}}')" \
  || fail "registration through nginx failed"
token="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' <<<"$register")"
since="$(curl_to matrix.example.org '/_matrix/client/v3/sync?timeout=0' -f \
  -H "Authorization: Bearer $token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_batch"])')" \
  || fail "initial sync through nginx failed"
start=$(date +%s)
curl_to matrix.example.org "/_matrix/client/v3/sync?timeout=3000&since=$since" -f -o /dev/null \
  -H "Authorization: Bearer $token" || fail "long-poll sync through nginx failed"
held=$(($(date +%s) - start))
[ "$held" -ge 2 ] || fail "the long-poll returned after ${held}s, not ~3s"

# Over Myelin's own limit (1 MiB here, under nginx's 50M): the client must
# get Matrix's error from Myelin, not an nginx page.
big="$(head -c 2000000 /dev/zero | tr '\0' 'a')"
answer="$(printf '{"body":"%s"}' "$big" | curl_to matrix.example.org \
  "/_matrix/client/v3/user/@proxied:example.org/account_data/big" -X PUT \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data-binary @- \
  -w '\n%{http_code}')"
[ "$(tail -n 1 <<<"$answer")" = 413 ] || fail "oversized body: $answer"
grep -q '"errcode":"M_TOO_LARGE"' <<<"$answer" || fail "oversized body without M_TOO_LARGE: $answer"

echo "nginx $(nginx -v 2>&1 | sed 's#.*/##'): site accepted; client API, .well-known, long-poll and limits work through it"
