#!/bin/bash
# Brings the Patroni + etcd cluster up: ha-db1, ha-db2 and ha-db3 at the same
# time, as their provisioning needs (an etcd member alone has no quorum, and
# each node's `agent apply` waits for Patroni to bootstrap the cluster).
#
# Run from anywhere; PROVIDER=libvirt|virtualbox picks the provider
# (default: Vagrant's own choice). Logs: vagrant/ha-dbN/up.log.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="$HERE/bin/agent"

if [ ! -x "$BIN" ]; then
    echo "Building the agent (release) for the VMs..."
    (cd "$HERE/.." && cargo build --release && install -m 0755 target/release/agent "$BIN")
fi

pids=()
for node in ha-db1 ha-db2 ha-db3; do
    echo "=== $node (log: vagrant/$node/up.log) ==="
    (cd "$HERE/$node" && vagrant up ${PROVIDER:+--provider="$PROVIDER"} >up.log 2>&1) &
    pids+=("$!")
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if [ "$failed" = 1 ]; then
    echo "A node failed to come up: see vagrant/ha-dbN/up.log; \`vagrant provision\` in its directory retries." >&2
    exit 1
fi

cat <<'DONE'
The three nodes are up (etcd on :2379, Patroni's REST API on :8008, PostgreSQL on :5432):
  ha-db1 172.16.254.21, ha-db2 172.16.254.22, ha-db3 172.16.254.23
  cd ha-db1 && vagrant ssh; sudo patronictl -c /etc/patroni/config.yml list
DONE
