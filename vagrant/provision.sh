#!/bin/bash
# Provisions one node of the Stash + HA PostgreSQL site (run by Vagrant as
# root, with the node name as $1): installs the agent and the site's code
# and data, converges the node once, then schedules drift correction.
#
# The repository is synced at /vagrant/agent; the agent binary is the one
# built on the host and copied to vagrant/bin/agent (see README.md).
#
# AGENT_ROOT=DIR provisions a sandbox instead of the machine (every path
# below DIR, `agent --root DIR`), and AGENT_REPO=DIR reads the repository
# from elsewhere: how tests/vagrant.rs runs this script where no VM can.
set -euo pipefail
# The agent looks for ./manifests before /etc/agent/manifests.
cd /

NODE="${1:?usage: provision.sh NODE_NAME}"
REPO="${AGENT_REPO:-/vagrant/agent}"
BIN="$REPO/vagrant/bin/agent"
ROOT="${AGENT_ROOT:-}"
ROOT="${ROOT%/}"
# Under a sandbox root the agent is told where everything is.
AGENT=("$ROOT/usr/local/bin/agent")
if [ -n "$ROOT" ]; then
    AGENT+=(--root "$ROOT" --manifests "$ROOT/etc/agent/manifests"
            --hiera-config "$ROOT/etc/agent/hiera.yaml" --facts-dir "$ROOT/etc/agent/facts.d")
fi

if [ ! -x "$BIN" ]; then
    echo "provision: $BIN is missing. On the host, in the repository:" >&2
    echo "    cargo build --release && cp target/release/agent vagrant/bin/" >&2
    echo "then: vagrant reload --provision" >&2
    exit 1
fi

install -d -m 0755 "$ROOT/usr/local/bin"
install -m 0755 "$BIN" "$ROOT/usr/local/bin/agent"

# The site's code and data where the agent looks by default:
# /etc/agent/manifests and /etc/agent/hiera.yaml (its datadir: /etc/agent/data).
ETC="$ROOT/etc/agent"
install -d -m 0755 "$ETC"
rm -rf "$ETC/manifests.new" "$ETC/data.new"
cp -r "$REPO/manifests" "$ETC/manifests.new"
cp -r "$REPO/hiera/data" "$ETC/data.new"
rm -rf "$ETC/manifests" "$ETC/data"
mv "$ETC/manifests.new" "$ETC/manifests"
mv "$ETC/data.new" "$ETC/data"
install -m 0644 "$REPO/hiera/hiera.yaml" "$ETC/hiera.yaml"

# Debian's postgresql package would create and start its own 15/main
# cluster in the data dir the site manages (pg_cluster / pg_standby create
# it): keep the package from doing so.
if [ -f /etc/debian_version ]; then
    install -d "$ROOT/etc/postgresql-common"
    echo 'create_main_cluster = false' > "$ROOT/etc/postgresql-common/createcluster.conf"
fi

# Converge. --detailed-exitcodes: 0 = nothing to change, 2 = changes made,
# 4/6 = failures (then the provisioning fails and says so).
rc=0
"${AGENT[@]}" apply --node "$NODE" --detailed-exitcodes || rc=$?
case "$rc" in
    0|2) echo "provision: $NODE converged (agent apply exit $rc)" ;;
    *) echo "provision: agent apply failed on $NODE (exit $rc)" >&2; exit "$rc" ;;
esac

# Drift correction every 30 minutes (a systemd timer on this box).
"${AGENT[@]}" install-timer --node "$NODE" --schedule '*/30 * * * *' --splay 5m
