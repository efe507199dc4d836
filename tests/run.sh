#!/usr/bin/env bash
# The whole test suite, on a fresh machine: `bash tests/run.sh`.
#
# It installs nothing system-wide. Emulators are set up here too, so CI and
# developers run exactly one command: moto (the AWS emulator) in a Python venv
# at .venv/ (tests/moto.sh; needs python3 and PyPI the first time), on a free
# port, for the AWS adapter tests (DEPLOYCTL_TEST_MOTO_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }

step "format"
cargo fmt --all -- --check

step "lint (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "AWS emulators (moto in .venv/ and tests/emulators/, tests/moto.sh)"
# shellcheck source=tests/moto.sh
. tests/moto.sh
log=$(mktemp)
trap 'moto_stop; rm -f "$log"' EXIT
moto_start
emulators_start

step "tests"
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?

step "emulator self-tests with the real boto3 clients (tests/emulators/test_iotjobs.py)"
"$MOTO_VENV/bin/python" tests/emulators/test_iotjobs.py 2>&1 | tee -a "$log" || status=$?

step "the Kubernetes end-to-end tests again, through the real-cluster switch (kubectl proxy to the test API server)"
if command -v kubectl >/dev/null && command -v curl >/dev/null; then
    (
        # shellcheck source=tests/real-cluster.sh
        . tests/real-cluster.sh
        real_cluster_on_emulator "$DEPLOYCTL_TEST_KUBEAPI_URL"
        cargo test -p deployctl --test it --locked --no-fail-fast -- kube_e2e
    ) 2>&1 | tee -a "$log" || status=$?
else
    echo "SKIPPED: kubectl and curl are needed for the real-cluster switch's run"
fi

# One closing line over every test binary (cargo prints one per binary, and
# the last one is often an empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\nsummary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
