#!/usr/bin/python3
"""A monitoring check written for Puppet's last_run_summary.yaml (the logic
of the common check_puppet_agent plugins): how old the last run is, how
many events failed, how many resources failed or are out of sync. Exit 0
OK, 1 WARNING (noop / out of sync), 2 CRITICAL (failures or too old)."""
import sys
import time

import yaml

with open(sys.argv[1]) as f:
    s = yaml.safe_load(f)
age = time.time() - int(s["time"]["last_run"])
failures = max(int(s["events"]["failure"]), int(s["resources"]["failed"]))
failed_restart = int(s["resources"]["failed_to_restart"])
out_of_sync = int(s["resources"]["out_of_sync"]) - int(s["resources"]["changed"])
total = float(s["time"]["total"])
print(
    f"last run {age:.0f}s ago, {total:.3f}s, {s['resources']['total']} resources, "
    f"{s['changes']['total']} changes, {failures} failures, {out_of_sync} out of sync"
)
if age > 3600 or failures or failed_restart:
    sys.exit(2)
if out_of_sync:
    sys.exit(1)
sys.exit(0)
