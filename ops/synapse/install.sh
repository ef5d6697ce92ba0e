#!/usr/bin/env bash
# Installs Synapse (PyPI matrix-synapse, with PostgreSQL support if it can) into a
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
"$venv/bin/pip" install -q matrix-synapse >&2
# PostgreSQL support is for the benchmark only (the interop tests run Synapse on
# SQLite). The psycopg2 of the `postgres` extra compiles against libpq; without a
# compiler and libpq headers, the prebuilt psycopg2-binary provides the same module.
"$venv/bin/pip" install -q "matrix-synapse[postgres]" >/dev/null 2>&1 \
  || "$venv/bin/pip" install -q psycopg2-binary >&2 \
  || echo "ops/synapse/install.sh: no PostgreSQL driver for Synapse (SQLite only)" >&2
"$venv/bin/python" -c "import synapse" >&2
echo "$venv"
