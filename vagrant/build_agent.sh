#!/bin/bash
# Builds the agent the VMs run (vagrant/bin/agent, release) when it is
# missing or older than a source of the repository (a Rust file, a
# Cargo.toml, Cargo.lock), so a changed agent never reaches the VMs as an
# old build; otherwise says it is up to date and builds nothing.
#
# Usage: build_agent.sh [REPO]   (default: the repository holding this script)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "${1:-$HERE/..}" && pwd)"
BIN="$REPO/vagrant/bin/agent"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"

# The first source newer than the binary, if any.
stale_source() {
    find "$REPO" \( -path "$REPO/target" -o -path "$TARGET" -o -path "$REPO/.git" \
        -o -path "$REPO/fuzz/target" \) -prune -o \
        -type f \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -newer "$BIN" -print -quit
}

if [ -x "$BIN" ]; then
    newer="$(stale_source)"
    if [ -z "$newer" ]; then
        echo "vagrant/bin/agent is up to date"
        exit 0
    fi
    echo "Rebuilding the agent for the VMs: ${newer#"$REPO"/} is newer than vagrant/bin/agent"
else
    echo "Building the agent (release) for the VMs..."
fi
(cd "$REPO" && cargo build --release)
install -D -m 0755 "$TARGET/release/agent" "$BIN"
