#!/usr/bin/env bash
# How long `withings-oauth token` takes with a fresh stored token, next to `withings-oauth
# --version` (a process that starts, parses its arguments and exits), in one hyperfine run.
#
#   bash crates/withings-oauth-cli/benches/token-process.sh [path/to/withings-oauth]
#
# Without a path it builds the release binary. Needs hyperfine (apt-get install hyperfine).
set -euo pipefail
cd "$(dirname "$0")/../../.."
bin="${1:-}"
if [ -z "$bin" ]; then
    cargo build --release --quiet -p withings-oauth-cli
    bin="${CARGO_TARGET_DIR:-target}/release/withings-oauth"
fi

home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
mkdir -m 700 "$home/data"
store="$home/data/tokens.json"
expires="$(date -u -d '+3 hours' +%Y-%m-%dT%H:%M:%SZ)"
(umask 077 && cat >"$store" <<JSON
{"format":1,"users":{"1001":{"format":1,"user_id":1001,
 "access_token":"0123456789abcdef0123456789abcdef01234567",
 "refresh_token":"fedcba9876543210fedcba9876543210fedcba98",
 "expires_at":"$expires","scopes":"user.metrics","token_type":"Bearer"}}}
JSON
)

export HOME="$home" XDG_CONFIG_HOME="$home/config" XDG_DATA_HOME="$home/data"
export WITHINGS_CLIENT_ID=bench-client WITHINGS_CLIENT_SECRET=bench-secret
export WITHINGS_REDIRECT_URI=https://app.example.com/withings/callback
export WITHINGS_BASE_URL=http://127.0.0.1:9/ WITHINGS_STORE="$store"
# The token is fresh: no request is made (the base URL is a closed port).
"$bin" token >/dev/null
json="$home/hyperfine.json"
hyperfine -N --warmup 20 --runs "${RUNS:-500}" --export-json "$json" "$bin --version" "$bin token"
# The median and the minimum resist a busy machine better than the mean.
python3 - "$json" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"]
med = [statistics.median(x["times"]) * 1e3 for x in r]
low = [min(x["times"]) * 1e3 for x in r]
for x, m, l in zip(r, med, low):
    print(f"{x['command']}: median {m:.2f} ms, min {l:.2f} ms")
print(f"token / --version: median {med[1] / med[0]:.2f}x, min {low[1] / low[0]:.2f}x")
PY
