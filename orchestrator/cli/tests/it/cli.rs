//! The `deployctl` binary, driven as a user would: arguments in, exit code,
//! stdout and stderr out. Outputs people read are snapshotted.

use std::process::{Command, Output};

use crate::{repo_root, snapshot};

fn deployctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .args(args)
        .current_dir(repo_root())
        .env_remove("NO_COLOR")
        .env_remove("DEPLOYCTL_STATE_DIR")
        .output()
        .expect("deployctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

fn snap(name: &str, actual: &str) {
    let path = repo_root().join("tests/fixtures/cli").join(name);
    if let Err(mismatch) = snapshot::check(&path, actual) {
        panic!("{mismatch}");
    }
}

#[test]
fn validate_accepts_good_plans_with_exit_0() {
    let out = deployctl(&[
        "validate",
        "examples/quickstart.yaml",
        "examples/lambda-canary.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    snap("validate-ok.stdout", &text(&out.stdout));
}

#[test]
fn validate_rejects_bad_plans_with_exit_2_and_diagnostics_on_stderr() {
    let out = deployctl(&[
        "validate",
        "examples/quickstart.yaml",
        "tests/fixtures/plans/invalid/canary-weight-over-100.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // The good file is still reported; the bad one only on stderr.
    assert_eq!(
        text(&out.stdout),
        "valid: examples/quickstart.yaml (3 stages, 3 targets)\n"
    );
    snap("validate-invalid.stderr", &text(&out.stderr));
}

#[test]
fn validate_reports_several_problems_at_once() {
    let out = deployctl(&["validate", "tests/fixtures/cli/several-mistakes.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("4 errors"), "{stderr}");
    snap("validate-several.stderr", &stderr);
}

#[test]
fn validate_json_lists_each_file_with_its_diagnostics() {
    let out = deployctl(&[
        "validate",
        "--output",
        "json",
        "tests/fixtures/plans/invalid/stage-unknown-target.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diagnostic = &results[0]["diagnostics"][0];
    assert_eq!(results[0]["valid"], false);
    assert_eq!(diagnostic["severity"], "error");
    assert_eq!(diagnostic["path"], "stages[0].target");
    assert!(diagnostic["location"]["line"].as_u64().unwrap() > 0);
    assert!(
        diagnostic["hint"]
            .as_str()
            .unwrap()
            .contains("did you mean")
    );
    assert!(out.stderr.is_empty(), "json mode keeps stderr quiet");
}

#[test]
fn missing_and_directory_inputs_are_invalid_input() {
    let out = deployctl(&["validate", "no/such/plan.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read no/such/plan.yaml"));
    let out = deployctl(&["validate", "examples"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is a directory"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(deployctl(&["validate"]).status.code(), Some(2));
    assert_eq!(deployctl(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn plan_prints_the_impact_report() {
    let out = deployctl(&["plan", "examples/quickstart.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    snap("plan-quickstart.stdout", &text(&out.stdout));
    let out = deployctl(&["plan", "examples/multi-target-release.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    snap("plan-multi-target.stdout", &text(&out.stdout));
}

#[test]
fn plan_json_has_order_rollback_and_durations() {
    let out = deployctl(&[
        "plan",
        "--output",
        "json",
        "tests/fixtures/plans/valid/concurrent-stages.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kind"], "PlanReport");
    // The file lists the stages as d, c, b, a: order comes from `after:`,
    // and stages of one level keep file order.
    assert_eq!(
        report["concurrency"],
        serde_json::json!([["a"], ["c", "b"], ["d"]])
    );
    assert_eq!(
        report["rollback"]["order"],
        serde_json::json!([["d"], ["c", "b"], ["a"]])
    );
    assert!(report["minimumDurationSeconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn plan_of_an_invalid_file_exits_2_and_prints_no_report() {
    let out = deployctl(&["plan", "tests/fixtures/plans/invalid/dag-cycle.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("cycle"));
}

#[test]
fn plan_out_saves_exactly_the_reviewed_plan() {
    let dir = std::env::temp_dir().join(format!("deployctl-saved-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan_path = dir.join("plan.yaml");
    let saved_path = dir.join("plan.saved.json");
    let source = std::fs::read(repo_root().join("examples/quickstart.yaml")).unwrap();
    std::fs::write(&plan_path, &source).unwrap();
    let out = deployctl(&[
        "plan",
        plan_path.to_str().unwrap(),
        "--out",
        saved_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let saved =
        deployctl_plan::saved::SavedPlan::from_json(&std::fs::read(&saved_path).unwrap()).unwrap();
    assert_eq!(saved.plan_source.as_bytes(), source.as_slice());
    assert_eq!(saved.plan_digest, deployctl_plan::sha256_hex(&source));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn schema_is_json_schema_for_the_plan() {
    let out = deployctl(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        schema["$schema"]
            .as_str()
            .unwrap()
            .contains("json-schema.org")
    );
    let properties = schema["properties"].as_object().unwrap();
    for field in [
        "apiVersion",
        "kind",
        "metadata",
        "targets",
        "stages",
        "gates",
        "approvals",
    ] {
        assert!(properties.contains_key(field), "schema lacks {field}");
    }
    assert_eq!(schema["additionalProperties"], false);
}

/// `--help` tells who the operator is and the exit codes (issue 12).
#[test]
fn help_names_the_operator_identity_and_the_exit_codes() {
    let out = deployctl(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("DEPLOYCTL_OPERATOR"), "{help}");
    assert!(help.contains("Exit codes:"), "{help}");
    for code in ["  0 ", "  1 ", "  2 ", "  3 ", "  130 "] {
        assert!(help.contains(code), "exit code {code} missing:\n{help}");
    }
}

/// `validate -` reads the plan from standard input, with the same checks
/// and diagnostics naming `<stdin>` (issue 12).
#[test]
fn validate_dash_reads_standard_input() {
    use std::io::Write as _;
    use std::process::Stdio;
    let run = |input: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deployctl"))
            .args(["validate", "-"])
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("deployctl runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("plan written");
        child.wait_with_output().expect("deployctl ends")
    };
    let quickstart = std::fs::read(repo_root().join("examples/quickstart.yaml")).unwrap();
    let out = run(&quickstart);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("valid: <stdin>"),
        "{}",
        text(&out.stdout)
    );
    let out = run(b"apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {name: x}\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("<stdin>:3:1"),
        "{}",
        text(&out.stderr)
    );
}

/// The JSON Schema is titled for people, not by the internal wire type
/// (issue 12).
#[test]
fn the_schema_has_a_title_for_editors() {
    let out = deployctl(&["schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let title = schema["title"].as_str().unwrap_or_default();
    assert!(title.contains("deployctl plan"), "{title}");
    assert!(!title.contains("RawPlan"), "{title}");
}

/// Every argument says what it is, and `status` says how it exits (issue
/// 12: positionals, `--yes`, `--gate`, `--user`, `--reason` had no help).
#[test]
fn arguments_have_help_and_status_documents_its_exit_codes() {
    let help = |command: &str| {
        let out = deployctl(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        text(&out.stdout)
    };
    let apply = help("apply");
    assert!(apply.contains("a saved plan from `plan --out`"), "{apply}");
    assert!(apply.contains("Do not ask for confirmation"), "{apply}");
    let reject = help("reject");
    for wanted in [
        "The approval gate",
        "Who rejects",
        "Why, for the audit trail",
        "approves or rejects",
    ] {
        assert!(reject.contains(wanted), "{wanted} missing:\n{reject}");
    }
    let rollback = help("rollback");
    assert!(rollback.contains("--target NAME"), "{rollback}");
    let status = help("status");
    assert!(status.contains("Exits as the run stands"), "{status}");
}

/// `rollback` with nothing named says both ways to name what to undo (it
/// used to print clap's "required arguments were not provided: <RUN>").
#[test]
fn rollback_without_a_run_names_both_ways_to_say_what_to_undo() {
    let out = deployctl(&["rollback"]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(said.contains("deployctl rollback RUN"), "{said}");
    assert!(said.contains("--target NAME"), "{said}");
}

/// With `--output json` a refusal is a document on stdout too (scripts
/// read stdout), with each diagnostic's file, line, column, path, message
/// and hint; the human text stays on stderr.
#[test]
fn json_output_prints_refusals_as_one_document_with_the_human_text_on_stderr() {
    let bad = "tests/fixtures/plans/invalid/canary-weight-over-100.yaml";
    let dir = std::env::temp_dir().join(format!("deployctl-json-refusals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "").expect("an empty file");
    let state = dir.join("state");
    let state = state.to_str().expect("utf-8");
    let empty = empty.to_str().expect("utf-8");
    let cases: Vec<Vec<&str>> = vec![
        vec!["plan", bad],
        vec!["plan", bad, "--observe"],
        vec!["apply", bad, "--yes"],
        vec!["rehearse", bad],
        vec!["iam-policy", bad],
        vec!["rbac", bad],
        vec!["plan", "no/such/plan.yaml"],
        vec!["apply", "no/such/plan.yaml", "--yes"],
        vec!["plan", empty],
    ];
    for case in cases {
        let mut args = vec!["--output", "json", "--state-dir", state];
        args.extend(&case);
        let out = deployctl(&args);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{case:?}\n{stdout}");
        let document: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("{case:?}: stdout is not one JSON document ({e}): {stdout:?}")
        });
        assert_eq!(document["apiVersion"], "deployctl.io/v1", "{case:?}");
        assert_eq!(document["kind"], "CommandError", "{case:?}");
        assert_eq!(document["exitCode"], 2, "{case:?}");
        assert_eq!(document["refused"], true, "{case:?}");
        let diagnostics = document["diagnostics"].as_array().expect("diagnostics");
        assert!(!diagnostics.is_empty(), "{case:?}: {document:#}");
        assert!(
            diagnostics
                .iter()
                .all(|d| d["file"].is_string() && d["message"].is_string()),
            "{case:?}: {document:#}"
        );
        assert!(
            !text(&out.stderr).trim().is_empty(),
            "{case:?}: the human text goes to stderr"
        );
    }
    // A validation error carries where and what, as the text does.
    let out = deployctl(&["--output", "json", "--state-dir", state, "plan", bad]);
    let document: serde_json::Value = serde_json::from_str(&text(&out.stdout)).expect("JSON");
    let first = &document["diagnostics"][0];
    assert_eq!(first["file"], bad, "{document:#}");
    assert!(
        first["line"].as_u64().is_some_and(|l| l > 0),
        "{document:#}"
    );
    assert!(
        first["column"].as_u64().is_some_and(|c| c > 0),
        "{document:#}"
    );
    assert!(
        first["path"]
            .as_str()
            .is_some_and(|p| p.contains("setWeight")),
        "{document:#}"
    );
    assert!(text(&out.stderr).contains("setWeight"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `validate` (and `plan`) warn about what would go wrong at `apply`
/// although the plan is valid: a target this build cannot apply (a fleet
/// whose firmware signature it cannot verify), and a stage that can only
/// time out.
#[test]
fn validate_warns_about_plans_apply_would_refuse_or_time_out() {
    const UNAPPLIABLE: &str = "tests/fixtures/plans/valid/fleet-signer-profile.yaml";
    let fleet = deployctl(&["validate", UNAPPLIABLE]);
    assert_eq!(fleet.status.code(), Some(0));
    let stderr = text(&fleet.stderr);
    assert!(
        stderr.contains("warning")
            && stderr.contains("cannot apply `cams`")
            && stderr.contains("AWS Signer profiles"),
        "{stderr}"
    );
    let signed = deployctl(&["validate", "examples/fleet-ota-waves.yaml"]);
    assert!(
        !text(&signed.stderr).contains("warning"),
        "{}",
        text(&signed.stderr)
    );
    let json = deployctl(&["--output", "json", "validate", UNAPPLIABLE]);
    let results: serde_json::Value = serde_json::from_str(&text(&json.stdout)).expect("JSON");
    assert!(
        results[0]["diagnostics"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["severity"] == "warning"
                && d["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("targets."))),
        "{results:#}"
    );
    let quick = deployctl(&["validate", "examples/quickstart.yaml"]);
    assert!(
        !text(&quick.stderr).contains("warning"),
        "{}",
        text(&quick.stderr)
    );

    // api-canary pauses 2 s twice, and its analysis takes 3 measurements
    // 1 s apart (2 s): at least 6 s.
    let plan = std::fs::read_to_string(repo_root().join("examples/quickstart.yaml"))
        .expect("the quickstart")
        .replacen("timeout: 1m", "timeout: 5s", 1);
    let dir =
        std::env::temp_dir().join(format!("deployctl-timeout-warning-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("short.yaml");
    std::fs::write(&path, plan).expect("plan written");
    let path = path.to_str().expect("utf-8");
    for command in ["validate", "plan"] {
        let out = deployctl(&[command, path]);
        assert_eq!(out.status.code(), Some(0), "{command}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("stages[0].timeout") || stderr.contains("always time out"),
            "{command}: {stderr}"
        );
        assert!(stderr.contains("at least 6s"), "{command}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Shell completions and a man page, generated from the same clap
/// definitions as `--help`, so they name every command and flag.
#[test]
fn completions_and_the_man_page_come_from_the_command_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = deployctl(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        for word in ["rollback", "kill", "approve", "state-dir"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bad = deployctl(&["completions", "cmd.exe"]);
    assert_eq!(bad.status.code(), Some(2));
    let man = deployctl(&["man"]);
    assert_eq!(man.status.code(), Some(0));
    let page = text(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH deployctl"),
        "{page}"
    );
    for word in ["rollback", "approve", "state\\-dir"] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
}
