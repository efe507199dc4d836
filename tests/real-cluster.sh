# The Kubernetes end-to-end tests through their real-cluster switch
# (orchestrator/cli/tests/it/real_cluster.rs), pointed at the test API
# server: what a run against a cluster does (kubeconfig credentials,
# `kubectl proxy`, TokenRequest tokens, shares derived from EndpointSlices
# and route status) is exercised on every CI run, not only where a cluster
# is at hand.
#
# Sourced by tests/run.sh after tests/moto.sh started the emulators
# (DEPLOYCTL_TEST_KUBEAPI_URL). To run the same tests against a real
# cluster, set the variables real_cluster.rs lists and run
#   DEPLOYCTL_E2E_REAL_CLUSTER=1 cargo test -p deployctl --test it -- kube_e2e

# Exports the switch's variables for the test API server at $1: a
# kubeconfig with a cluster-admin token and two contexts (the second names
# the same server by another address, so its targets are another
# cluster's), pinned images, and a crash-looping image in every namespace.
real_cluster_on_emulator() {
    local url=$1 dir token port
    dir=$(mktemp -d -t deployctl-real-cluster.XXXXXX)
    token=real-switch-admin
    port=${url##*:}
    curl -fsS -X POST "$url/_emulator/tokens" -H 'Content-Type: application/json' \
        -d "{\"token\": \"$token\", \"user\": \"real-switch-admin\", \"groups\": [\"system:masters\"]}" >/dev/null
    export DEPLOYCTL_E2E_CRASHING_IMAGE="registry.test/web@sha256:6666666666666666666666666666666666666666666666666666666666666666"
    curl -fsS -X POST "$url/_emulator/images?namespace=*" -H 'Content-Type: application/json' \
        -d "{\"image\": \"$DEPLOYCTL_E2E_CRASHING_IMAGE\", \"behaviour\": \"crashloop\"}" >/dev/null
    cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: emulated
  cluster: {server: "$url"}
- name: emulated-west
  cluster: {server: "http://localhost:$port"}
users:
- name: admin
  user: {token: $token}
contexts:
- name: emulated
  context: {cluster: emulated, user: admin}
- name: emulated-west
  context: {cluster: emulated-west, user: admin}
current-context: emulated
EOF
    export KUBECONFIG="$dir/kubeconfig"
    export DEPLOYCTL_E2E_REAL_CLUSTER=1
    export DEPLOYCTL_E2E_SECOND_CONTEXT=emulated-west
    export DEPLOYCTL_E2E_STABLE_IMAGE="registry.test/web@sha256:4444444444444444444444444444444444444444444444444444444444444444"
    export DEPLOYCTL_E2E_NEW_IMAGE="registry.test/web@sha256:5555555555555555555555555555555555555555555555555555555555555555"
    export DEPLOYCTL_E2E_GATEWAY_CLASS=test
}
