#!/usr/bin/env bash
# The whole test suite, on a fresh machine: `bash tests/run.sh`.
#
# It installs nothing system-wide. Later suites that need emulators (moto in a
# Python venv, the repo's own AWS/Kubernetes test servers) are set up here too,
# so CI and developers run exactly one command.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }

step "format"
cargo fmt --all -- --check

step "lint (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked --no-fail-fast
