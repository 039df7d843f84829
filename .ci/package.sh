#!/usr/bin/env bash
# Packages every crate meant for crates.io as `cargo publish` would, and checks that every other
# member of the workspace is `publish = false`.
#
#   bash .ci/package.sh            # package, listing each crate's files (fast, no build)
#   bash .ci/package.sh --verify   # also build each package from its .crate, as publish does
#
# Without --verify the packages are not built from their .crate files: the builds and doc
# tests of .ci/run cover the code, and cargo-hack checks every feature. With --verify cargo
# builds them in dependency order, taking our own dependencies from the packages just made
# (a temporary local registry), since they are not on crates.io yet.
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
