#!/usr/bin/env bash
# What keeps the crates publishable, run by .ci/run after the tests (which install the GTK and
# WebKitGTK packages the webview feature builds against):
# - every feature of every crate builds alone, and with no default features;
# - the dependency tree's licences, bans and sources (deny.toml);
# - the public API of each published library crate matches its snapshot (docs/public-api/);
# - every crate meant for crates.io packages, and the others are `publish = false`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/cargo-tool.sh cargo-hack 0.6.46
bash .ci/cargo-tool.sh cargo-deny 0.20.2

# --no-dev-deps: a dev-dependency's features would hide a missing one. The SQL store has no
# backend without its default feature and refuses to build so (compile_error!): it is checked
# with each backend alone instead.
cargo hack check --workspace --exclude withings-oauth-sql --each-feature --no-dev-deps
cargo hack check --package withings-oauth-sql --each-feature --exclude-no-default-features \
    --no-dev-deps

# Warnings (the same crate in two versions, through the GUI and SQL stacks) are not shown.
# Advisories are not checked: their database can't be fetched here (deny.toml).
cargo deny --locked --log-level error check licenses bans sources

bash .ci/public-api.sh
bash .ci/package.sh
