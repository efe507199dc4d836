//! `apply` and `rollback` on a real AWS target through the real SDK,
//! against the moto server that `tests/run.sh` starts. Skipped, with a
//! message, when `DEPLOYCTL_TEST_MOTO_URL` is not set (a plain `cargo test`).

use crate::sandbox::Sandbox;

fn moto() -> Option<String> {
    crate::emulators::moto("aws::*")
}

/// Runs Python (moto's venv has boto3) against moto; returns stdout.
fn python(moto: &str, script: &str) -> String {
    crate::emulators::python(&[("MOTO", moto)], "", script)
}

const CLIENT: &str = "import boto3, io, json, os, zipfile\n\
kw = dict(endpoint_url=os.environ['MOTO'], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
lam = boto3.client('lambda', **kw)\n";

#[test]
fn a_lambda_canary_promotes_and_the_runbook_rolls_it_back() {
    let Some(moto) = moto() else { return };
    let function = format!("checkout-{}", std::process::id());
    python(
        &moto,
        &format!(
            "{CLIENT}iam = boto3.client('iam', **kw)\n\
role = iam.create_role(RoleName='{function}-role', AssumeRolePolicyDocument='{{}}')['Role']['Arn']\n\
buf = io.BytesIO()\n\
with zipfile.ZipFile(buf, 'w') as z: z.writestr('handler.py', 'def handler(e, c):\\n    return 1\\n')\n\
lam.create_function(FunctionName='{function}', Runtime='python3.12', Role=role, Handler='handler.handler', Code={{'ZipFile': buf.getvalue()}})\n\
lam.publish_version(FunctionName='{function}')\n\
buf2 = io.BytesIO()\n\
with zipfile.ZipFile(buf2, 'w') as z: z.writestr('handler.py', 'def handler(e, c):\\n    return 2\\n')\n\
lam.update_function_code(FunctionName='{function}', ZipFile=buf2.getvalue())\n\
lam.publish_version(FunctionName='{function}', Description='v2')\n\
lam.create_alias(FunctionName='{function}', Name='live', FunctionVersion='1')\n"
        ),
    );
    let alias = || {
        python(
            &moto,
            &format!(
                "{CLIENT}a = lam.get_alias(FunctionName='{function}', Name='live')\n\
print(a['FunctionVersion'], json.dumps(a.get('RoutingConfig', {{}}).get('AdditionalVersionWeights', {{}})))"
            ),
        )
    };
    let sandbox = Sandbox::new("aws-lambda");
    let plan = sandbox.root().join("lambda.yaml");
    std::fs::write(
        &plan,
        format!(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: lambda-e2e, environment: test}}\n\
targets:\n  fn:\n    lambda: {{functionName: {function}, alias: live, region: us-east-1}}\n\
artifacts:\n  fn: {{version: \"2\", lambda: {{version: \"2\"}}}}\n\
stages:\n  - name: fn\n    target: fn\n    canary:\n      steps: [{{setWeight: 10}}, {{pause: {{duration: 300ms}}}}, {{setWeight: 50}}]\n"
        ),
    )
    .unwrap();
    let aws = |args: &[&str]| {
        let mut command = sandbox.command(args);
        command
            .env("AWS_ENDPOINT_URL", &moto)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE");
        command.output().expect("deployctl runs")
    };
    let applied = aws(&["apply", plan.to_str().unwrap(), "--yes"]);
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(
        alias(),
        "2 {}",
        "the alias is promoted to version 2 with no extra weights"
    );
    // The journal holds the AWS request IDs of the alias updates (S7).
    let run = sandbox.run_ids().pop().unwrap();
    let calls = sandbox.journal().events(&run).unwrap();
    assert!(
        calls.iter().any(|e| e.kind == "callDone"
            && e.data["requestIds"]
                .as_array()
                .is_some_and(|ids| !ids.is_empty())),
        "no request IDs journaled"
    );

    let rolled_back = aws(&["rollback", &run, "--yes"]);
    assert_eq!(
        rolled_back.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rolled_back.stderr)
    );
    assert_eq!(
        alias(),
        "1 {}",
        "the runbook puts the alias back on version 1"
    );
}
