#!/usr/bin/env bash
# Installs a cargo tool at an exact version unless that version is already there.
# Usage: bash .ci/cargo-tool.sh cargo-<name> <version>
set -euo pipefail
crate="$1" version="$2"
# `cargo hack --version` prints "cargo-hack 0.6.46".
installed="$(command -v "$crate" >/dev/null 2>&1 && cargo "${crate#cargo-}" --version 2>/dev/null | head -n 1 || true)"
installed="${installed#"${installed%%[0-9]*}"}"
if [ "${installed%% *}" != "$version" ]; then
    echo "installing $crate $version"
    # cargo-hack and cargo-deny ask for LTO and one codegen unit: a long build on one core,
    # for run-time gains that don't matter to a CI run.
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        cargo install --locked --quiet "$crate" --version "$version"
fi
