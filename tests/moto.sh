#!/usr/bin/env bash
# The AWS emulator for the AWS adapters' tests: moto's server mode, pinned.
#
# Source it (`. tests/moto.sh`) from tests/run.sh: it makes a Python venv at
# .venv/ when missing (about 40 s on a warm pip cache), starts moto_server on
# 127.0.0.1 on a free port, waits until it answers and exports
# DEPLOYCTL_TEST_MOTO_URL. It then starts the repo's own emulators for what
# moto lacks (tests/emulators/*.py, documented in tests/emulators/README.md):
# each on its own free port, exporting DEPLOYCTL_TEST_<NAME>_URL (NAME is
# the file's name in capitals). `moto_stop` stops them all; the caller's EXIT
# trap must call it (sourcing cannot add to a trap the caller sets
# afterwards).
#
# Run directly (`bash tests/moto.sh -- COMMAND...`) it starts everything,
# runs COMMAND with the variables set and stops everything afterwards.

MOTO_VERSION=5.2.5
# A real Lua 5.1 for the Argo CD health check's test (deploy/argocd/).
LUPA_VERSION=2.8
MOTO_VENV=${MOTO_VENV:-.venv}
MOTO_PID=
MOTO_LOG_TEMP=
EMULATOR_PIDS=()
TLS_DIR=

moto_install() {
    if [ -x "$MOTO_VENV/bin/moto_server" ] &&
        "$MOTO_VENV/bin/python" -c "import moto, lupa, sys; sys.exit(moto.__version__ != '$MOTO_VERSION' or lupa.__version__ != '$LUPA_VERSION')" 2>/dev/null; then
        export DEPLOYCTL_TEST_PYTHON="$(cd "$MOTO_VENV" && pwd)/bin/python"
        return 0
    fi
    command -v python3 >/dev/null || { echo "python3 is required for the AWS emulator (moto)"; return 1; }
    local started=$SECONDS
    echo "moto: installing moto[server]==$MOTO_VERSION into $MOTO_VENV"
    python3 -m venv "$MOTO_VENV" || return 1
    "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "lupa==$LUPA_VERSION" || return 1
    export DEPLOYCTL_TEST_PYTHON="$(cd "$MOTO_VENV" && pwd)/bin/python"
    echo "moto: installed in $((SECONDS - started)) s"
}

moto_free_port() {
    "$MOTO_VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

moto_start() {
    moto_install || return 1
    local port log
    port=$(moto_free_port) || return 1
    if [ -n "${MOTO_LOG:-}" ]; then
        log=$MOTO_LOG
    else
        log=$(mktemp -t moto.XXXXXX.log) && MOTO_LOG_TEMP=$log
    fi
    "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    MOTO_PID=$!
    local url="http://127.0.0.1:$port" i
    for i in $(seq 1 150); do
        if "$MOTO_VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('$url/moto-api/', timeout=1)" 2>/dev/null; then
            export DEPLOYCTL_TEST_MOTO_URL=$url
            echo "moto: $MOTO_VERSION listening on $url (pid $MOTO_PID, log $log)"
            return 0
        fi
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            echo "moto: moto_server exited:"; cat "$log"; MOTO_PID=; return 1
        fi
        sleep 0.2
    done
    echo "moto: no answer on $url after 30 s:"; cat "$log"
    moto_stop
    return 1
}

# Starts tests/emulators/NAME.py on a free port and waits until it answers
# GET /_emulator/health.
emulator_start() {
    local script=$1 name port url log i
    name=$(basename "$script" .py)
    port=$(moto_free_port) || return 1
    url="http://127.0.0.1:$port"
    log=$(mktemp -t "emulator-$name.XXXXXX.log")
    "$MOTO_VENV/bin/python" "$script" --port "$port" >"$log" 2>&1 &
    local pid=$!
    EMULATOR_PIDS+=("$pid")
    for i in $(seq 1 100); do
        if "$MOTO_VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('$url/_emulator/health', timeout=1)" 2>/dev/null; then
            export "DEPLOYCTL_TEST_$(echo "$name" | tr '[:lower:]-' '[:upper:]_')_URL=$url"
            echo "emulator: $name listening on $url (pid $pid, log $log)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "emulator: $name exited:"; cat "$log"; return 1
        fi
        sleep 0.1
    done
    echo "emulator: $name gave no answer on $url:"; cat "$log"
    return 1
}

# A throwaway CA and a certificate for 127.0.0.1 signed by it, for the
# emulators' HTTPS endpoints (the IoT Jobs emulator's presigned firmware
# downloads): exports DEPLOYCTL_TEST_TLS_CA, _CERT and _KEY. Skipped, with
# a message, without openssl (the tests that need HTTPS then skip).
tls_setup() {
    [ -n "${DEPLOYCTL_TEST_TLS_CERT:-}" ] && return 0
    command -v openssl >/dev/null || { echo "tls: openssl not found; HTTPS downloads are not served"; return 0; }
    local dir
    dir=$(mktemp -d -t deployctl-tls.XXXXXX)
    TLS_DIR=$dir
    (
        cd "$dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -keyout ca.key -out ca.pem -subj "/CN=deployctl test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -out server.pem -extfile server.ext
    ) >/dev/null 2>&1 || { echo "tls: could not make the test certificates"; return 0; }
    export DEPLOYCTL_TEST_TLS_CA="$dir/ca.pem" DEPLOYCTL_TEST_TLS_CERT="$dir/server.pem" DEPLOYCTL_TEST_TLS_KEY="$dir/server.key"
    echo "tls: test CA $DEPLOYCTL_TEST_TLS_CA"
}

emulators_start() {
    tls_setup
    local script
    for script in tests/emulators/*.py; do
        [ -e "$script" ] || continue
        # test_*.py test an emulator (they start servers of their own).
        case "$(basename "$script")" in test_*) continue ;; esac
        emulator_start "$script" || return 1
    done
}

moto_stop() {
    local pid
    # `wait` on a killed child returns 143; under the callers' `set -e`
    # that must not end the cleanup before every emulator is stopped.
    for pid in "${EMULATOR_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    EMULATOR_PIDS=()
    if [ -n "$MOTO_PID" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
        MOTO_PID=
    fi
    if [ -n "${TLS_DIR:-}" ]; then
        rm -rf "$TLS_DIR"
        TLS_DIR=
        unset DEPLOYCTL_TEST_TLS_CA DEPLOYCTL_TEST_TLS_CERT DEPLOYCTL_TEST_TLS_KEY
    fi
    if [ -n "$MOTO_LOG_TEMP" ]; then
        rm -f "$MOTO_LOG_TEMP"
        MOTO_LOG_TEMP=
    fi
    return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cd "$(dirname "$0")/.."
    [ "${1:-}" = "--" ] && shift
    trap moto_stop EXIT
    moto_start
    emulators_start
    if [ $# -gt 0 ]; then "$@"; else echo "moto: running until interrupted"; wait "$MOTO_PID"; fi
fi
