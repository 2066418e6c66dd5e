#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) and prints, per target,
# the executions and the crashes found (artifacts under fuzz/artifacts/).
# cargo-fuzz needs nightly features: on a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks them. Install it once with `cargo install cargo-fuzz`.
set -u
cd "$(dirname "$0")"
secs="${1:-60}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
targets=$(cargo fuzz list)
cargo fuzz build -O >/dev/null || exit 1
mkdir -p logs
total_crashes=0
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(ls "artifacts/$t" | wc -l)
    # -rss_limit_mb: a parser must not need more than 2 GiB on any input.
    cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 >"logs/$t.log" 2>&1
    rc=$?
    execs=$(grep -m1 'stat::number_of_executed_units' "logs/$t.log" | awk '{print $2}')
    speed=$(grep -m1 'stat::average_exec_per_sec' "logs/$t.log" | awk '{print $2}')
    crashes=$(( $(ls "artifacts/$t" | wc -l) - before ))
    total_crashes=$(( total_crashes + crashes ))
    printf '%-12s %10s execs %8s/s  %d crashes  (exit %d, log fuzz/logs/%s.log)\n' \
        "$t" "${execs:-?}" "${speed:-?}" "$crashes" "$rc" "$t"
done
echo "total crashes: $total_crashes"
[ "$total_crashes" -eq 0 ]
