#!/usr/bin/env bash
# Checks the monitoring kit with promtool: the scrape config, the alert rules
# and their unit tests, and that every query of the Grafana dashboard is valid
# PromQL. (That every metric they name exists is checked against a running
# server by homeserver/tests/it/monitoring_kit.rs.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp "$here/prometheus.yml" "$here/alerts.yml" "$work/"
promtool check config "$work/prometheus.yml"
(cd "$here" && promtool test rules alerts_test.yml)

# Each dashboard query becomes a recording rule so promtool parses it.
python3 - "$here/grafana-dashboard.json" "$work/dashboard-rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert exprs, "the dashboard has no queries"
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        # Grafana variables are not PromQL: give them a value.
        e = e.replace("$instance", ".*")
        out.write(f"      - record: dashboard:query{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(exprs)} dashboard queries")
PY
promtool check rules "$work/dashboard-rules.yml"
