#!/usr/bin/env bash
# Installs Synapse (PyPI matrix-synapse, with PostgreSQL support) into a
# virtualenv, once: a second run with the venv in place does nothing. Prints
# the venv's path on stdout (progress goes to stderr), so callers can do
#   venv="$(bash ops/synapse/install.sh)"
# The path is $SYNAPSE_VENV, or /var/tmp/myelin-synapse.
set -euo pipefail
venv="${SYNAPSE_VENV:-/var/tmp/myelin-synapse}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import synapse" 2>/dev/null; then
  echo "$venv"
  exit 0
fi

# Debian's python3 lacks the venv module until python3-venv is installed.
if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing python3-venv" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq python3-venv >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
  else
    echo "ops/synapse/install.sh: python3 has no venv module; install python3-venv (as root)" >&2
    exit 1
  fi
fi

echo "== installing Synapse into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip >&2
"$venv/bin/pip" install -q "matrix-synapse[postgres]" >&2
"$venv/bin/python" -c "import synapse" >&2
echo "$venv"
