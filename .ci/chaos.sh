#!/usr/bin/env bash
# The fault campaign (tests/chaos, docs/reliability.md): a 2-minute run per backend with a
# fixed seed. A failing run prints its seed and the shortest excerpt of the history that shows
# the violation, and this script exits non-zero. Needs PostgreSQL's server binaries (the
# campaign starts a cluster of its own), Debian's faketime and util-linux's prlimit; installs
# what is missing.
#
#   bash .ci/chaos.sh [SEED] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."

seed="${1:-20261207}"
duration="${2:-2m}"

need=()
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing campaign prerequisites: ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --locked -p withings-sandbox -p withings-oauth-web-example -p withings-oauth-chaos --bins
status=0
for backend in postgres sqlite; do
  out="target/chaos/ci-$backend-$seed"
  if ! target/debug/withings-oauth-chaos --backend "$backend" --seed "$seed" \
      --duration "$duration" --quiet 45s --recovery-bound 40s --out "$out"; then
    echo "chaos: the $backend campaign failed (seed $seed); its records are in $out" >&2
    status=1
  fi
done
exit $status
