"""Prints Synapse/Myelin ratios from the load generator's JSON reports and
checks them against the goals. Usage: ratios.py <bench dir> <db kind> <synapse version>."""
import json
import os
import sys

bench, db, synapse_version = sys.argv[1], sys.argv[2], sys.argv[3]


def load(server, scenario):
    with open(os.path.join(bench, f"{server}-{db}-{scenario}.json")) as f:
        return json.load(f)


sm, mm = load("synapse", "messages"), load("myelin", "messages")
si, mi = load("synapse", "initial-sync"), load("myelin", "initial-sync")

# (what, Synapse, Myelin, unit, goal: Synapse/Myelin at least this)
rows = [
    ("CPU per message", sm["cpu_ms_per_message"], mm["cpu_ms_per_message"], "ms", 20),
    ("p99 send-to-sync latency", sm["latency_ms"]["p99"], mm["latency_ms"]["p99"], "ms", 10),
    ("median send-to-sync latency", sm["latency_ms"]["median"], mm["latency_ms"]["median"], "ms", None),
    ("peak memory", sm["peak_rss_bytes"] / 2**20, mm["peak_rss_bytes"] / 2**20, "MiB", 4),
    ("initial sync (median)", si["ms"]["median"], mi["ms"]["median"], "ms", 10),
    ("messages per second", mm["messages_per_second"], sm["messages_per_second"], "msg/s (Myelin / Synapse)", None),
]

print(f"\nSynapse {synapse_version} vs Myelin, {db}, {mm['users']} users x "
      f"{mm['messages_per_user']} messages, {mm['observers']} observers; "
      f"initial sync of {mi['rooms']} rooms x {mi['messages_per_room']} messages")
print(f"{'':32} {'Synapse':>12} {'Myelin':>12} {'ratio':>8} {'goal':>6}")
failed = 0
for what, s, m, unit, goal in rows:
    if what == "messages per second":
        ratio = s / m if m else float("inf")
        print(f"{what:32} {m:12.1f} {s:12.1f} {ratio:7.1f}x  ({unit})")
        continue
    ratio = s / m if m else float("inf")
    verdict = ""
    if goal is not None:
        verdict = f"{goal:>5}x " + ("met" if ratio >= goal else "NOT met")
        failed += ratio < goal
    print(f"{what:32} {s:10.2f}{unit[:3]:>2} {m:10.2f}{unit[:3]:>2} {ratio:7.1f}x {verdict}")
missing = (sm["latency_ms"]["missing"], mm["latency_ms"]["missing"])
if any(missing):
    print(f"warning: messages never seen by an observer: Synapse {missing[0]}, Myelin {missing[1]}")
print(f"{failed} goal(s) not met" if failed else "all goals met")
