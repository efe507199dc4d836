//! The controller's shipped manifests (`deploy/`): the CRD is the one the
//! binary prints, the Deployment asks for what the binary serves and runs
//! restricted, and the Argo CD health check maps every Release fixture as
//! expected under a real Lua 5.1 (`deploy/argocd/test_health.py`; its
//! interpreter, PyPI `lupa`, comes with the test venv of `tests/moto.sh`).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::sandbox::Sandbox;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("the repository root")
}

/// One YAML manifest as JSON, every number as a float (YAML's `0.0` and
/// JSON's `0` are one value to the API server).
fn manifest(name: &str) -> Value {
    floats(object(name))
}

/// One YAML manifest as JSON, as written (what `kubectl apply` sends).
pub(crate) fn object(name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("deploy").join(name)).expect("the manifest");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn floats(value: Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(floats).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        other => other,
    }
}

#[test]
fn the_shipped_crd_is_the_one_the_controller_prints() {
    let sandbox = Sandbox::new("deploy-crd");
    let out = sandbox.run(&["controller", "--print-crd"]);
    out.expect_code(0);
    let printed: Value = serde_json::from_str(&out.stdout).expect("the CRD as JSON");
    assert_eq!(
        manifest("crd.yaml"),
        floats(printed),
        "deploy/crd.yaml differs from `deployctl controller --print-crd`"
    );
}

#[test]
fn the_shipped_deployment_is_restricted_and_uses_flags_the_binary_has() {
    let deployment = manifest("deployment.yaml");
    assert_eq!(deployment["spec"]["replicas"], 2.0);
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(pod["affinity"]["podAntiAffinity"].is_object(), "{pod:#}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{security:#}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{security:#}");
    assert_eq!(security["capabilities"]["drop"][0], "ALL", "{security:#}");
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let sandbox = Sandbox::new("deploy-flags");
    let help = sandbox.run(&["controller", "--help"]);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.stdout.contains(flag),
            "the manifest passes {flag}, which `deployctl controller` lacks\n{help}"
        );
    }
    for wanted in [
        "--metrics-bind-address",
        "--health-probe-bind-address",
        "--no-install-crd",
    ] {
        assert!(args.contains(&wanted), "{args:?}");
    }
    let probes = [
        &container["livenessProbe"]["httpGet"]["path"],
        &container["readinessProbe"]["httpGet"]["path"],
    ];
    assert_eq!(probes, [&Value::from("/healthz"), &Value::from("/readyz")]);
    let pdb = manifest("pdb.yaml");
    assert_eq!(pdb["spec"]["minAvailable"], 1.0);
    let kustomization = manifest("kustomization.yaml");
    for file in kustomization["resources"].as_array().expect("resources") {
        let file = file.as_str().expect("a file name");
        assert!(
            repo().join("deploy").join(file).exists(),
            "kustomization names missing {file}"
        );
    }
}

#[test]
fn the_argo_cd_health_check_maps_every_release_fixture() {
    let Ok(python) = std::env::var("DEPLOYCTL_TEST_PYTHON") else {
        eprintln!(
            "SKIPPED the_argo_cd_health_check_maps_every_release_fixture: DEPLOYCTL_TEST_PYTHON is not set (tests/moto.sh sets it to the venv with lupa)"
        );
        return;
    };
    let out = Command::new(python)
        .arg(repo().join("deploy/argocd/test_health.py"))
        .output()
        .expect("the health check's test runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(" passed, 0 failed") && text.contains("Lua 5.1"),
        "{text}"
    );
}

/// The test API server's authentication and RBAC (what `kube_e2e.rs`
/// relies on to prove `deployctl rbac` and the shipped RBAC sufficient):
/// its own test script, run against servers it starts.
#[test]
fn the_test_api_servers_authentication_and_rbac_behave_as_kubernetes() {
    let text = emulator_self_test("test_kubeapi_auth.py");
    assert!(text.contains("OK"), "{text}");
}

/// Runs one of the test API server's own test scripts
/// (`tests/emulators/NAME`), which start the servers they test; fails
/// unless it passes, and returns what it printed.
fn emulator_self_test(script: &str) -> String {
    let python = std::env::var("DEPLOYCTL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg(repo().join("tests/emulators").join(script))
        .output()
        .unwrap_or_else(|e| panic!("{script} runs: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// The test API server's plain LIST, answered from objects it rendered
/// once per version (the 1,000-Release bench lists them twice a second):
/// the same items as the paged LIST, after every write.
#[test]
fn the_test_api_servers_plain_list_is_its_paged_list_after_every_write() {
    let text = emulator_self_test("test_kubeapi_list.py");
    assert!(text.contains("Ran 1 test") && text.contains("OK"), "{text}");
}
