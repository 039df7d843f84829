#!/usr/bin/env bash
# Refresh throughput of the fleet under load, next to the database's own bound, in one run:
#
# 1. PostgreSQL: USERS expired users refreshed by INSTANCES fleet processes (each a pool of
#    CONNECTIONS), no rate limit, against the sandbox on this machine (examples/load.rs);
# 2. pgbench on the same database: one UPDATE of one row of a 1,000-row table per
#    transaction, with as many clients as the fleets had connections, for PGBENCH_SECONDS;
# 3. SQLite: the same users refreshed by one fleet process, then a loop of one-row durable
#    updates on a SQLite file of the same settings (printed by the example).
#
# Usage, from anywhere in the repository:
#   crates/withings-oauth-fleet/benches/load.sh
#   USERS=1000 INSTANCES=2 crates/withings-oauth-fleet/benches/load.sh
# Needs PostgreSQL (started by .ci/postgres.sh) and pgbench, psql. See docs/benchmarks.md.
set -euo pipefail

cd "$(dirname "$0")/../../.."
# shellcheck source=/dev/null
source .ci/postgres.sh
: "${WITHINGS_TEST_DATABASE_URL:?.ci/postgres.sh did not set WITHINGS_TEST_DATABASE_URL}"

USERS=${USERS:-10000}
INSTANCES=${INSTANCES:-4}
CONNECTIONS=${CONNECTIONS:-4}
PGBENCH_SECONDS=${PGBENCH_SECONDS:-10}
CLIENTS=$((INSTANCES * CONNECTIONS))

cargo build --quiet --release -p withings-oauth-fleet --example load
load="${CARGO_TARGET_DIR:-target}/release/examples/load"

echo "== load before the run: $(uptime)"
"$load" --backend postgres --users "$USERS" --instances "$INSTANCES" --connections "$CONNECTIONS"

schema="withings_pgbench_$$"
url="$WITHINGS_TEST_DATABASE_URL"
drop_schema() { psql "$url" -q -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null; }
script=$(mktemp)
trap 'drop_schema; rm -f "$script"' EXIT
psql "$url" -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE SCHEMA $schema;
CREATE TABLE $schema.rows (id integer PRIMARY KEY, n bigint NOT NULL);
INSERT INTO $schema.rows SELECT g, 0 FROM generate_series(1, 1000) AS g;
SQL
printf '%s\n' '\set id random(1, 1000)' 'UPDATE rows SET n = n + 1 WHERE id = :id;' >"$script"
echo "== pgbench: one-row UPDATE, $CLIENTS clients, ${PGBENCH_SECONDS}s ($(uptime))"
PGOPTIONS="-c search_path=$schema" pgbench -n -f "$script" -c "$CLIENTS" -j 2 \
  -T "$PGBENCH_SECONDS" "$url" | grep -E '^(tps|number of transactions actually|latency average)'

echo "== SQLite, one instance ($(uptime))"
"$load" --backend sqlite --users "$USERS" --instances 1
echo "== load after the run: $(uptime)"
