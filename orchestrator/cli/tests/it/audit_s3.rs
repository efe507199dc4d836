//! The audit trail's AWS side through the binary, against moto: `apply`
//! ships its trail to a bucket under Object Lock (COMPLIANCE) and `audit
//! verify --against s3://…` checks the local trail with it; a bucket
//! without Object Lock is refused before anything runs; MFA secrets can be
//! keyed by KMS. Skipped, with a message, without `DEPLOYCTL_TEST_MOTO_URL`.

use std::time::{SystemTime, UNIX_EPOCH};

use totp_rs::Totp;

use crate::sandbox::{COMMAND_TIMEOUT, Finished, Sandbox};

const QUICKSTART: &str = "examples/quickstart.yaml";
const ACCESS: &str = "tests/fixtures/access/approvals.yaml";

fn moto() -> Option<String> {
    crate::emulators::moto("audit_s3::*")
}

/// Runs Python (moto's venv has boto3, `s3` and `kms` clients ready)
/// against moto; returns stdout.
pub(crate) fn python(moto: &str, script: &str) -> String {
    crate::emulators::python(
        &[("MOTO", moto)],
        &format!(
            "{}s3 = boto3.client('s3', **kw)\nkms = boto3.client('kms', **kw)\n",
            crate::emulators::MOTO_CLIENT
        ),
        script,
    )
}

/// A bucket name no other test or run uses.
fn bucket(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{label}-{}-{nanos}", std::process::id())
}

/// `deployctl ARGS` with moto as AWS and `env` on top.
fn run(sandbox: &Sandbox, moto: &str, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut command = sandbox.command(args);
    command
        .env("AWS_ENDPOINT_URL", moto)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("DEPLOYCTL_AUDIT_SHIP_DIR")
        .env_remove("DEPLOYCTL_MFA_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    sandbox
        .spawn_command(command, args, None)
        .wait(COMMAND_TIMEOUT)
}

#[test]
fn apply_ships_the_trail_to_a_locked_bucket_and_verify_against_checks_it() {
    let Some(moto) = moto() else { return };
    let bucket = bucket("deployctl-trail");
    python(
        &moto,
        &format!("s3.create_bucket(Bucket='{bucket}', ObjectLockEnabledForBucket=True)"),
    );
    let sink = format!("s3://{bucket}/prod");
    let sandbox = Sandbox::new("audit-s3");
    run(
        &sandbox,
        &moto,
        &["apply", QUICKSTART, "--yes"],
        &[("DEPLOYCTL_AUDIT_SINK", &sink)],
    )
    .expect_code(0);

    // Every shipped object is locked in COMPLIANCE mode for at least a year.
    let objects = python(
        &moto,
        &format!(
            "now = datetime.datetime.now(datetime.timezone.utc)\n\
for o in s3.list_objects_v2(Bucket='{bucket}', Prefix='prod/').get('Contents', []): \
h = s3.head_object(Bucket='{bucket}', Key=o['Key']); \
days = (h['ObjectLockRetainUntilDate'] - now).total_seconds() / 86400; \
print(o['Key'], h['ObjectLockMode'], 'year' if days >= 364.99 else days)"
        ),
    );
    let lines: Vec<&str> = objects.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("prod/records-")),
        "no records shipped: {objects}"
    );
    for line in &lines {
        assert!(line.ends_with(" COMPLIANCE year"), "{line}");
    }

    let verified = run(
        &sandbox,
        &moto,
        &["audit", "verify", "--against", &sink],
        &[],
    );
    verified.expect_code(0);
    assert!(verified.stdout.contains("audit trail intact"), "{verified}");
    let shipped: usize = verified
        .stdout
        .split("matches the shipped copy (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no shipped count in {verified}"));
    assert!(shipped >= 5, "{verified}");

    // Someone cuts off the end of the local trail, checkpoints and all:
    // only the shipped copy can tell.
    let audit = sandbox.state_dir().join("audit");
    let text = std::fs::read_to_string(audit.join("audit.jsonl")).unwrap();
    let kept: Vec<&str> = text.lines().take(shipped - 2).collect();
    std::fs::write(audit.join("audit.jsonl"), kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(audit.join("checkpoints.jsonl")).unwrap();
    run(&sandbox, &moto, &["audit", "verify"], &[]).expect_code(0);
    let cut = run(
        &sandbox,
        &moto,
        &["audit", "verify", "--against", &sink],
        &[],
    );
    cut.expect_code(1);
    assert!(cut.stdout.contains("TAMPERED"), "{cut}");
    assert!(
        cut.stdout.contains(&format!(
            "seq {}: the log ends at seq {}",
            shipped - 1,
            shipped - 2
        )),
        "{cut}"
    );
    assert!(
        cut.stdout.contains(&format!("s3://{bucket}/prod/")),
        "{cut}"
    );

    // A wrong location is an input error, not a pass.
    run(
        &sandbox,
        &moto,
        &["audit", "verify", "--against", "s3://Bad_Bucket"],
        &[],
    )
    .expect_code(2);
}

#[test]
fn a_bucket_without_object_lock_is_refused_before_the_run() {
    let Some(moto) = moto() else { return };
    let bucket = bucket("deployctl-unlocked");
    python(&moto, &format!("s3.create_bucket(Bucket='{bucket}')"));
    let sandbox = Sandbox::new("audit-s3-unlocked");
    let refused = run(
        &sandbox,
        &moto,
        &["apply", QUICKSTART, "--yes"],
        &[("DEPLOYCTL_AUDIT_SINK", &format!("s3://{bucket}/prod"))],
    );
    refused.expect_code(2);
    assert!(
        refused
            .stderr
            .contains("does not have S3 Object Lock enabled"),
        "{refused}"
    );
    assert!(
        refused.stderr.contains("put-object-lock-configuration"),
        "{refused}"
    );
    assert!(sandbox.sim_dir().read_dir().is_err() || sandbox.run_ids().is_empty());

    // Less than a year of retention is refused too, with the fix.
    let short = run(
        &sandbox,
        &moto,
        &["apply", QUICKSTART, "--yes"],
        &[
            ("DEPLOYCTL_AUDIT_SINK", &format!("s3://{bucket}/prod")),
            ("DEPLOYCTL_AUDIT_RETENTION_DAYS", "30"),
        ],
    );
    short.expect_code(2);
    assert!(short.stderr.contains("at least 365 days"), "{short}");
}

#[test]
fn mfa_secrets_can_be_keyed_by_kms() {
    let Some(moto) = moto() else { return };
    let keys = python(
        &moto,
        "print(kms.create_key()['KeyMetadata']['KeyId'], kms.create_key()['KeyMetadata']['KeyId'])",
    );
    let (key, other) = keys.split_once(' ').expect("two key IDs");
    let sandbox = Sandbox::new("mfa-kms");
    let kms = [("DEPLOYCTL_MFA_KMS_KEY", key)];
    let enrolled = run(
        &sandbox,
        &moto,
        &["--access", ACCESS, "mfa", "enroll", "bob"],
        &kms,
    );
    enrolled.expect_code(0);
    let state = sandbox.state_dir();
    assert!(state.join("mfa.key.kms").exists(), "{enrolled}");
    assert!(
        !state.join("mfa.key").exists(),
        "no local key file with KMS"
    );
    let uri = enrolled
        .stderr
        .lines()
        .find(|line| line.starts_with("otpauth://"))
        .unwrap_or_else(|| panic!("no otpauth URI in {enrolled}"))
        .trim()
        .to_string();
    let totp = Totp::from_url_unchecked(&uri).expect("a valid otpauth URI");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Another KMS key cannot unwrap it: refused, naming the file.
    let wrong = run(
        &sandbox,
        &moto,
        &[
            "mfa",
            "confirm",
            "bob",
            "--code",
            &totp.generate(now).to_string(),
        ],
        &[("DEPLOYCTL_MFA_KMS_KEY", other)],
    );
    assert_ne!(wrong.code, Some(0), "{wrong}");
    assert!(wrong.stderr.contains("mfa.key.kms"), "{wrong}");

    // A new process with the right key unwraps it and checks the code.
    run(
        &sandbox,
        &moto,
        &[
            "mfa",
            "confirm",
            "bob",
            "--code",
            &totp.generate(now).to_string(),
        ],
        &kms,
    )
    .expect_code(0);
}
