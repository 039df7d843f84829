#!/usr/bin/env bash
# Every ratio benchmark of the workspace in quick mode, each ratio printed next to its goal
# (docs/benchmarks.md), to check a change to a hot path in a minute or two once built.
#
#   bash .ci/bench-ratios.sh            # all of them
#   bash .ci/bench-ratios.sh fresh      # only the ratios whose name contains "fresh"
#   MEASURE=5 bash .ci/bench-ratios.sh  # longer criterion measurements (seconds, default 2)
#
# Quick figures move more than the full runs of docs/benchmarks.md; read a ratio near its goal
# again with the full command there. The SQL store ratios run when WITHINGS_TEST_DATABASE_URL
# is set (`source .ci/postgres.sh`); the `withings-oauth token` ratio when hyperfine is
# installed. The fleet under load (benches/load.sh, with pgbench) takes minutes and is left out.
set -euo pipefail
cd "$(dirname "$0")/.."

only="${1:-}"
quick=(--warm-up-time "${WARMUP:-1}" --measurement-time "${MEASURE:-2}" --noplot)
criterion=target/criterion
rows=()

wanted() { [ -z "$only" ] || [[ "$1" == *"$only"* ]]; }

# Runs a command with its output in a log, shown only if it fails.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
quiet() { "$@" >"$log" 2>&1 || { cat "$log" >&2; return 1; }; }

# The median of criterion's last estimate of a benchmark, in nanoseconds.
median() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' \
        "$criterion/$1/new/estimates.json"
}

# row NAME NUMERATOR DENOMINATOR GOAL UNIT: one line of the table, from two figures.
row() {
    rows+=("$(python3 -c '
import sys
name, a, b, goal, unit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
scale = {"ns": 1, "us": 1e3, "ms": 1e6}[unit]
ratio = a / b
met = "yes" if ratio <= goal else "NO"
print(f"{name:<28} {a/scale:>9.1f} / {b/scale:<9.1f} {unit:<2}  {ratio:>5.2f}  <= {goal:<4}  {met}")
' "$@")")
}

if wanted session_fresh_token; then
    quiet cargo bench -p withings-oauth --bench session -- "${quick[@]}" '^fresh_token/'
    row session_fresh_token "$(median fresh_token/session_access_token)" \
        "$(median fresh_token/naive_rwlock_string_clone)" 1.0 ns
fi

if wanted session_herd; then
    quiet cargo bench -p withings-oauth --bench session -- "${quick[@]}" \
        '^expired_session(_10ms_network)?/(session_1000_concurrent_callers|plain_refresh_round_trip)$'
    row session_herd_loopback "$(median expired_session/session_1000_concurrent_callers)" \
        "$(median expired_session/plain_refresh_round_trip)" 1.5 us
    row session_herd_10ms_network \
        "$(median expired_session_10ms_network/session_1000_concurrent_callers)" \
        "$(median expired_session_10ms_network/plain_refresh_round_trip)" 1.5 ms
fi

if wanted fleet_fresh; then
    # Its own harness: alternating rounds, the fastest of each.
    quiet cargo bench -p withings-oauth-fleet --bench fresh_ratio
    line="$(grep 'ratio' "$log")"
    session="$(sed -n 's/^session \([0-9.]*\) ns.*/\1/p' <<<"$line")"
    fleet="$(sed -n 's/.*fleet (one of [0-9]*) \([0-9.]*\) ns.*/\1/p' <<<"$line")"
    row fleet_fresh_one_of_100k "$fleet" "$session" 1.5 ns
fi

if wanted sql_cas_save; then
    if [ -n "${WITHINGS_TEST_DATABASE_URL:-}" ]; then
        quiet cargo bench -p withings-oauth-sql --bench sql_store -- "${quick[@]}" '^cas_save/'
        for backend in sqlite postgres; do
            row "sql_cas_save_$backend" \
                "$(median "cas_save_$backend/store_save_encrypted")" \
                "$(median "cas_save_$backend/bare_update")" 1.5 us
        done
    else
        rows+=("sql_cas_save_*: skipped, WITHINGS_TEST_DATABASE_URL is not set (source .ci/postgres.sh)")
    fi
fi

if wanted cli_token_process; then
    if command -v hyperfine >/dev/null; then
        quiet env RUNS="${RUNS:-200}" bash crates/withings-oauth-cli/benches/token-process.sh
        out="$(cat "$log")"
        version="$(sed -n 's/.* --version: median \([0-9.]*\) ms.*/\1/p' <<<"$out")"
        token="$(sed -n 's/.* token: median \([0-9.]*\) ms.*/\1/p' <<<"$out")"
        row cli_token_process "${token}e6" "${version}e6" 1.5 ms
    else
        rows+=("cli_token_process: skipped, hyperfine is not installed (apt-get install hyperfine)")
    fi
fi

echo
printf '%-28s %23s  %5s  %-7s %s\n' ratio "measured" ratio goal met
printf '%s\n' "${rows[@]}"
echo "(load average: $(cut -d' ' -f1-3 /proc/loadavg))"
