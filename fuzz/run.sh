#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds (default 20) and prints, per target, the executions,
# the coverage (libFuzzer's `cov:`, edges reached) and whether it crashed.
#
#   bash fuzz/run.sh 600            # ten minutes each
#   TARGETS="paste callback" bash fuzz/run.sh 60
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). New inputs
# go to fuzz/target/corpus/<target>, so the seeds committed in fuzz/corpus/<target> stay small;
# a crash is saved in fuzz/artifacts/<target>/ and makes the script fail.
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
targets="${TARGETS:-$(cargo +nightly fuzz list)}"
cargo +nightly fuzz build || exit 1
mkdir -p target/logs
failed=0
printf '%-18s %12s %8s %8s  %s\n' target executions exec/s cov result
for t in $targets; do
    mkdir -p "target/corpus/$t"
    log="target/logs/$t.log"
    cargo +nightly fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=20 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then result=ok; else result="CRASH (see $log, fuzz/artifacts/$t/)"; failed=1; fi
    printf '%-18s %12s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$result"
done
exit "$failed"
