#!/usr/bin/env bash
# Checks the systemd unit with `systemd-analyze verify`: unknown or misspelt
# directives and bad values only print warnings there, so any output fails.
# The unit's binary path is pointed at a built `myelin` so the ExecStart
# checks have something to find.
#
#   MYELIN_BIN=target/debug/myelin bash ops/systemd/check.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$(realpath "${MYELIN_BIN:?set MYELIN_BIN to a built myelin binary}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed "s#/usr/local/bin/myelin#$bin#g" "$here/myelin.service" >"$work/myelin.service"
out="$(systemd-analyze verify "$work/myelin.service" 2>&1)" || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "ops/systemd/check.sh: systemd-analyze warns about ops/systemd/myelin.service" >&2
  exit 1
fi
echo "systemd $(systemd-analyze --version | head -n 1 | awk '{print $2}'): unit verified"
