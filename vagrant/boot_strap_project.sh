#!/bin/bash
# Brings the site up in the order it needs, as the seed's script does: the
# primary first (stash-server: Stash's node with the PostgreSQL primary),
# then the standby, which seeds itself from the primary with pg_basebackup.
#
# Run from anywhere; PROVIDER=libvirt|virtualbox picks the provider
# (default: Vagrant's own choice).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# The VMs run vagrant/bin/agent: built when missing, rebuilt when a source
# is newer than it.
"$HERE/build_agent.sh"

for node in stash-server production-db-standby; do
    echo "=== $node ==="
    (cd "$HERE/$node" && vagrant up ${PROVIDER:+--provider="$PROVIDER"})
done

cat <<'DONE'
Both nodes are up.
  primary:  stash-server           172.16.254.11:5432  (cd stash-server && vagrant ssh)
  standby:  production-db-standby  172.16.254.12:5432  (cd production-db-standby && vagrant ssh)
Failover test: see vagrant/README.md.
DONE
