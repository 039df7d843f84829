#!/usr/bin/env bash
# Packages every crate meant for crates.io as `cargo publish` would, and checks that every other
# member of the workspace is `publish = false`.
#
#   bash .ci/package.sh            # package, listing each crate's files (fast, no build)
#   bash .ci/package.sh --verify   # also build each package from its .crate, as publish does
#
# With --verify cargo builds every package from its .crate file, in dependency order, taking our
# own dependencies (the sandbox too: it is the core's dev-dependency) from the packages just made,
# since they are not on crates.io yet: all eight verify so, together (12.5 minutes on the 2-core
# machine, shared). One crate alone can't: its path dependencies aren't on crates.io. CI runs
# without --verify for that cost: the tests and doc tests of .ci/run build the same code, and
# cargo-hack checks every feature.
set -euo pipefail
cd "$(dirname "$0")/.."

PUBLISHED=(
    withings-oauth
    withings-oauth-store
    withings-oauth-sql
    withings-oauth-axum
    withings-oauth-webview
    withings-oauth-fleet
    withings-oauth-cli
    withings-sandbox
)

verify=--no-verify
case "${1:-}" in
    --verify) verify= ;;
    "") ;;
    *) echo "usage: bash .ci/package.sh [--verify]" >&2; exit 2 ;;
esac

# Every workspace member is either in PUBLISHED or `publish = false`.
cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
published = set(sys.argv[1:])
wrong = []
for p in json.load(sys.stdin)["packages"]:
    publishable = p["publish"] != []
    if publishable != (p["name"] in published):
        wrong.append(p["name"] + (" is publishable" if publishable else " is publish = false"))
if wrong:
    sys.exit("crates.io: " + "; ".join(wrong) + " (.ci/package.sh lists the published crates)")
' "${PUBLISHED[@]}"

packages=()
for crate in "${PUBLISHED[@]}"; do packages+=(--package "$crate"); done
cargo package --locked $verify "${packages[@]}"
