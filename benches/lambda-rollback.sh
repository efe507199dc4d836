#!/usr/bin/env bash
# Rolling back 20 Lambda aliases caught mid-canary, three ways, against moto:
#
#   deployctl  `deployctl rollback RUN --yes` of a run of a plan with 20
#              independent Lambda canary stages, SIGKILLed while every alias
#              sends 10% to version 2 (the run is created for real by
#              `deployctl apply`, not timed);
#   cli-loop   what users script today: a shell loop of
#              `aws lambda update-alias ... --function-version 1
#              --routing-config AdditionalVersionWeights={}`;
#   boto3      a sequential boto3 script doing the same 20 update_alias calls.
#
# Each is timed as the whole process a user would start (wall clock), after
# the same reset (every alias at 1 + {"2": 0.1}); the median of RUNS runs.
# Every run is checked: all 20 aliases on version 1 with no extra weights.
#
# With LATENCY_MS=L every call goes through tests/emulators/faults.py,
# which delays each by L..2L ms in parallel (AWS-like round trips; moto
# alone answers in ~2 ms and serialises calls on its GIL).
#
# Usage: [LATENCY_MS=30] bash benches/lambda-rollback.sh [RUNS]   (default 7)
# Needs: .venv (moto, boto3; tests/moto.sh makes it), .venv-bench with
# awscli (made here when missing; never on tests/run.sh's path), and the
# binary at $DEPLOYCTL (default target/release/deployctl).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-7}
STAGES=20
DEPLOYCTL=${DEPLOYCTL:-target/release/deployctl}

if [ -z "${DEPLOYCTL_TEST_MOTO_URL:-}" ]; then
    exec bash tests/moto.sh -- bash "$0" "$@"
fi
if [ ! -x .venv-bench/bin/aws ]; then
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install --quiet --disable-pip-version-check awscli
fi
[ -x "$DEPLOYCTL" ] || { echo "no binary at $DEPLOYCTL: cargo build --release -p deployctl"; exit 1; }

MOTO=$DEPLOYCTL_TEST_MOTO_URL
if [ -n "${LATENCY_MS:-}" ]; then
    MOTO=$DEPLOYCTL_TEST_FAULTS_URL
    .venv/bin/python - "$MOTO" "$LATENCY_MS" <<'EOF'
import json, sys, urllib.request
url, ms = sys.argv[1], int(sys.argv[2])
body = json.dumps({"account": "123456789012", "rate": 1.0, "kinds": ["latency"], "latencyMs": [ms, 2 * ms]}).encode()
urllib.request.urlopen(urllib.request.Request(url + "/_emulator/faults", data=body, method="POST"))
EOF
fi
WORK=$(mktemp -d -t deployctl-bench-lambda.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# One moto account for the bench; everything goes straight to moto.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=$MOTO AWS_EC2_METADATA_DISABLED=true \
    AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
unset AWS_PROFILE AWS_SESSION_TOKEN
PREFIX="bench-$$"
PY=.venv/bin/python

# -- fixtures ---------------------------------------------------------------
$PY - "$PREFIX" "$STAGES" <<'EOF'
import boto3, io, sys, zipfile
prefix, n = sys.argv[1], int(sys.argv[2])
lam = boto3.client('lambda'); iam = boto3.client('iam')
role = iam.create_role(RoleName=prefix + '-role', AssumeRolePolicyDocument='{}')['Role']['Arn']
def code(v):
    b = io.BytesIO()
    with zipfile.ZipFile(b, 'w') as z: z.writestr('handler.py', 'def handler(e, c):\n    return %d\n' % v)
    return b.getvalue()
for i in range(n):
    name = f'{prefix}-{i:02d}'
    lam.create_function(FunctionName=name, Runtime='python3.12', Role=role, Handler='handler.handler', Code={'ZipFile': code(1)})
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=code(2))
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name='live', FunctionVersion='1')
EOF

PLAN=$WORK/plan.yaml
{
    printf 'apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {name: lambda-rollback-bench, environment: bench}\ntargets:\n'
    for i in $(seq -f %02g 0 $((STAGES - 1))); do
        printf '  fn%s:\n    lambda: {functionName: %s-%s, alias: live, region: us-east-1}\n' "$i" "$PREFIX" "$i"
    done
    printf 'artifacts:\n'
    for i in $(seq -f %02g 0 $((STAGES - 1))); do
        printf '  fn%s: {version: "2", lambda: {version: "2"}}\n' "$i"
    done
    printf 'stages:\n'
    for i in $(seq -f %02g 0 $((STAGES - 1))); do
        printf '  - name: fn%s\n    target: fn%s\n    canary:\n      steps: [{setWeight: 10}, {pause: {duration: 1h}}]\n' "$i" "$i"
    done
} >"$PLAN"

# Every alias at 1 + {"2": 0.1}, or (with "check") asserts all are on 1 alone.
aliases() {
    $PY - "$PREFIX" "$STAGES" "$1" <<'EOF'
import boto3, sys, time
prefix, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lam = boto3.client('lambda')
names = [f'{prefix}-{i:02d}' for i in range(n)]
if mode == 'split':
    for name in names:
        lam.update_alias(FunctionName=name, Name='live', FunctionVersion='1',
                         RoutingConfig={'AdditionalVersionWeights': {'2': 0.1}})
elif mode == 'wait-split':
    deadline = time.time() + 60
    while True:
        weights = [lam.get_alias(FunctionName=name, Name='live').get('RoutingConfig', {}).get('AdditionalVersionWeights') for name in names]
        if all(w == {'2': 0.1} for w in weights): break
        if time.time() > deadline: sys.exit(f'aliases never all reached 10%: {weights}')
        time.sleep(0.05)
else:
    for name in names:
        a = lam.get_alias(FunctionName=name, Name='live')
        w = a.get('RoutingConfig', {}).get('AdditionalVersionWeights') or {}
        if a['FunctionVersion'] != '1' or w:
            sys.exit(f'{name}: alias on {a["FunctionVersion"]} {w} after the rollback')
EOF
}

cat >"$WORK/boto3-rollback.py" <<'EOF'
import boto3, sys
prefix, n = sys.argv[1], int(sys.argv[2])
lam = boto3.client('lambda')
for i in range(n):
    lam.update_alias(FunctionName=f'{prefix}-{i:02d}', Name='live', FunctionVersion='1',
                     RoutingConfig={'AdditionalVersionWeights': {}})
EOF

now_ms() { date +%s%3N; }
declare -a T_DEPLOYCTL T_CLI T_BOTO3

for run in $(seq 1 "$RUNS"); do
    # deployctl: a real run, killed mid-canary, then the runbook's rollback.
    aliases check >/dev/null 2>&1 || true
    state=$WORK/state-$run
    "$DEPLOYCTL" apply "$PLAN" --yes --state-dir "$state" >"$WORK/apply-$run.log" 2>&1 &
    apply=$!
    aliases wait-split
    kill -9 "$apply"; wait "$apply" 2>/dev/null || true
    id=$("$DEPLOYCTL" status --output json --state-dir "$state" | $PY -c 'import json,sys; print(json.load(sys.stdin)["run"])')
    start=$(now_ms)
    "$DEPLOYCTL" rollback "$id" --yes --state-dir "$state" >"$WORK/rollback-$run.log" 2>&1 ||
        { cat "$WORK/rollback-$run.log"; exit 1; }
    T_DEPLOYCTL+=($(($(now_ms) - start)))
    aliases check

    aliases split
    start=$(now_ms)
    for i in $(seq -f %02g 0 $((STAGES - 1))); do
        .venv-bench/bin/aws lambda update-alias --function-name "$PREFIX-$i" --name live \
            --function-version 1 --routing-config 'AdditionalVersionWeights={}' >/dev/null
    done
    T_CLI+=($(($(now_ms) - start)))
    aliases check

    aliases split
    start=$(now_ms)
    $PY "$WORK/boto3-rollback.py" "$PREFIX" "$STAGES"
    T_BOTO3+=($(($(now_ms) - start)))
    aliases check
    echo "run $run: deployctl ${T_DEPLOYCTL[-1]} ms, cli-loop ${T_CLI[-1]} ms, boto3 ${T_BOTO3[-1]} ms"
done

$PY - "${T_DEPLOYCTL[*]}" "${T_CLI[*]}" "${T_BOTO3[*]}" <<'EOF'
import statistics, sys
d, c, b = ([int(x) for x in arg.split()] for arg in sys.argv[1:4])
md, mc, mb = statistics.median(d), statistics.median(c), statistics.median(b)
print(f'| way | min | median | max | runs |\n|---|---|---|---|---|')
for name, xs in (('`deployctl rollback RUN`', d), ('`aws lambda update-alias` loop', c), ('sequential boto3 script', b)):
    print(f'| {name} | {min(xs)} ms | {statistics.median(xs):.0f} ms | {max(xs)} ms | {len(xs)} |')
print(f'\nratio deployctl / cli-loop = {md / mc:.4f} (target <= 0.02)')
print(f'ratio deployctl / boto3    = {md / mb:.3f} (target <= 0.3)')
EOF
