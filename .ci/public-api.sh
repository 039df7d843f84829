#!/usr/bin/env bash
# The public API of every published library crate, as listed by `cargo public-api` from the
# nightly toolchain's rustdoc JSON, against the snapshots committed in docs/public-api/.
#
#   bash .ci/public-api.sh            # fails, with the difference, when an API changed
#   bash .ci/public-api.sh --update   # rewrites the snapshots; commit them with the change
#
# cargo-public-api reads one version of rustdoc's JSON format: 0.52 reads format 57, which the
# installed nightly (1.97, 2026-05-19) writes. A nightly that writes another format makes the
# tool say so; install the cargo-public-api release made for it and change PUBLIC_API_VERSION.
# The binary crate (withings-oauth-cli) has no library API.
set -euo pipefail
cd "$(dirname "$0")/.."

PUBLIC_API_VERSION=0.52.0
CRATES=(
    withings-oauth
    withings-oauth-store
    withings-oauth-sql
    withings-oauth-axum
    withings-oauth-webview
    withings-oauth-fleet
    withings-sandbox
)

update=false
case "${1:-}" in
    --update) update=true ;;
    "") ;;
    *) echo "usage: bash .ci/public-api.sh [--update]" >&2; exit 2 ;;
esac

bash .ci/cargo-tool.sh cargo-public-api "$PUBLIC_API_VERSION"
rustup toolchain list | grep -q '^nightly' || {
    echo "cargo public-api needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
}

out=docs/public-api
# The nightly builds go to a target directory of their own, so they never invalidate the
# stable ones.
export CARGO_TARGET_DIR="${PUBLIC_API_TARGET_DIR:-target/public-api}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
changed=()
for crate in "${CRATES[@]}"; do
    # -ss: no blanket or auto-trait impls, which change with dependencies rather than with us.
    cargo public-api --package "$crate" --all-features --simplified --simplified \
        --color never >"$tmp/$crate.txt"
    if $update; then
        mkdir -p "$out"
        cp "$tmp/$crate.txt" "$out/$crate.txt"
    elif ! diff -u "$out/$crate.txt" "$tmp/$crate.txt" >"$tmp/$crate.diff" 2>&1; then
        changed+=("$crate")
        cat "$tmp/$crate.diff"
    fi
done
if $update; then
    echo "public API snapshots written to $out/"
elif [ ${#changed[@]} -gt 0 ]; then
    echo "the public API of ${changed[*]} changed without its snapshot (above: - snapshot, + now)." >&2
    echo "If the change is meant, run \`bash .ci/public-api.sh --update\` and commit $out/ with it." >&2
    exit 1
else
    echo "public API unchanged (${#CRATES[@]} crates)"
fi
