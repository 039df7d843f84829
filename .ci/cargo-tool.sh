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
    cargo install --locked --quiet "$crate" --version "$version"
fi
