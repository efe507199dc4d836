//! `deployctl artifact …` through the binary: local keys end to end (and
//! checked by `openssl`, so the formats are the standard ones), every
//! refusal a device would make, and the KMS and S3 path against moto.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sandbox::{COMMAND_TIMEOUT, Finished, Sandbox};

fn run(sandbox: &Sandbox, args: &[&str]) -> Finished {
    sandbox.run(args)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An image, a signing key and a key-encryption key in the sandbox.
struct Kit {
    image: PathBuf,
    encrypted: PathBuf,
    key: PathBuf,
    content: PathBuf,
}

fn kit(sandbox: &Sandbox, algorithm: &str) -> Kit {
    let dir = sandbox.root();
    let image = dir.join("t4-app.bin");
    let bytes: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&image, bytes).unwrap();
    let key = dir.join(format!("{algorithm}.key"));
    let content = dir.join("content.key");
    run(
        sandbox,
        &[
            "artifact",
            "keygen",
            "--algorithm",
            algorithm,
            "--out",
            path(&key),
        ],
    )
    .expect_code(0);
    run(
        sandbox,
        &[
            "artifact",
            "keygen",
            "--content-key",
            "--out",
            path(&content),
        ],
    )
    .expect_code(0);
    let encrypted = dir.join("t4-app.bin.enc");
    run(
        sandbox,
        &[
            "artifact",
            "encrypt",
            path(&image),
            "--out",
            path(&encrypted),
            "--key-file",
            path(&content),
        ],
    )
    .expect_code(0);
    Kit {
        image,
        encrypted,
        key,
        content,
    }
}

fn sign(sandbox: &Sandbox, kit: &Kit, version: &str, extra: &[&str]) -> Finished {
    let mut args = vec![
        "artifact",
        "sign",
        path(&kit.encrypted),
        "--firmware",
        "t4-app",
        "--version",
        version,
        "--hardware",
        "t4-rev-a",
        "--hardware",
        "t4-rev-b",
        "--min-version",
        "4.0.0",
        "--signing-key",
        path(&kit.key),
        "--content-key",
        path(&kit.content),
    ];
    args.extend_from_slice(extra);
    run(sandbox, &args)
}

fn public(kit: &Kit) -> String {
    format!("{}.pub", kit.key.display())
}

fn manifest(kit: &Kit) -> String {
    format!("{}.manifest.json", kit.encrypted.display())
}

#[test]
fn a_signed_encrypted_image_verifies_as_a_device_would_and_is_audited() {
    for algorithm in ["ed25519", "ecdsa-p256"] {
        let sandbox = Sandbox::new("artifact");
        let kit = kit(&sandbox, algorithm);
        sign(&sandbox, &kit, "4.2.0", &[]).expect_code(0);
        let verified = run(
            &sandbox,
            &[
                "--output",
                "json",
                "artifact",
                "verify",
                &manifest(&kit),
                "--public-key",
                &public(&kit),
                "--image",
                path(&kit.encrypted),
                "--content-key",
                path(&kit.content),
                "--hardware",
                "t4-rev-b",
                "--installed",
                "4.1.3",
            ],
        );
        verified.expect_code(0);
        let report: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
        assert_eq!(report["install"], "upgrade", "{algorithm}");
        assert_eq!(report["encrypted"], true);
        assert_eq!(report["checked"].as_array().unwrap().len(), 4, "{report}");

        // The signing is in the trail with the manifest's digest and signer.
        let trail = run(
            &sandbox,
            &[
                "--output",
                "json",
                "audit",
                "show",
                "--action",
                "artifact.signed",
            ],
        );
        trail.expect_code(0);
        assert!(
            trail.stdout.contains(report["sha256"].as_str().unwrap()),
            "{}",
            trail.stdout
        );
        assert!(
            trail.stdout.contains(report["signer"].as_str().unwrap()),
            "{}",
            trail.stdout
        );
        run(&sandbox, &["audit", "verify"]).expect_code(0);
    }
}

#[test]
fn what_a_device_refuses_is_refused_with_exit_2() {
    let sandbox = Sandbox::new("artifact-refusals");
    let kit = kit(&sandbox, "ed25519");
    sign(&sandbox, &kit, "4.2.0", &[]).expect_code(0);
    let verify = |extra: &[&str]| {
        let mut args = vec!["artifact", "verify"];
        args.extend_from_slice(extra);
        run(&sandbox, &args)
    };
    let manifest = manifest(&kit);
    let public = public(&kit);

    // The plain image is not the one the manifest names.
    let wrong = verify(&[
        &manifest,
        "--public-key",
        &public,
        "--image",
        path(&kit.image),
    ]);
    wrong.expect_code(2);
    assert!(wrong.stderr.contains("the manifest says"), "{wrong}");

    // A flipped byte in the image.
    let tampered = sandbox.root().join("tampered.enc");
    let mut bytes = std::fs::read(&kit.encrypted).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&tampered, bytes).unwrap();
    let flipped = verify(&[
        &manifest,
        "--public-key",
        &public,
        "--image",
        path(&tampered),
    ]);
    flipped.expect_code(2);
    assert!(flipped.stderr.contains("SHA-256"), "{flipped}");

    // Another key's public key.
    let other = sandbox.root().join("other.key");
    run(&sandbox, &["artifact", "keygen", "--out", path(&other)]).expect_code(0);
    let other_pub = format!("{}.pub", other.display());
    let foreign = verify(&[&manifest, "--public-key", &other_pub]);
    foreign.expect_code(2);
    assert!(
        foreign.stderr.contains("signature does not verify"),
        "{foreign}"
    );

    // A manifest edited after signing.
    let edited = sandbox.root().join("edited.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut envelope: serde_json::Value = serde_json::from_str(&text).unwrap();
    let payload = envelope["payload"].as_str().unwrap().to_owned();
    let mut chars: Vec<char> = payload.chars().collect();
    chars[40] = if chars[40] == 'A' { 'B' } else { 'A' };
    envelope["payload"] = chars.into_iter().collect::<String>().into();
    std::fs::write(&edited, envelope.to_string()).unwrap();
    verify(&[path(&edited), "--public-key", &public]).expect_code(2);

    // Hardware it was not built for; a downgrade; a device too old for it.
    let hw = verify(&[
        &manifest,
        "--public-key",
        &public,
        "--hardware",
        "t5",
        "--installed",
        "4.1.3",
    ]);
    hw.expect_code(2);
    assert!(hw.stderr.contains("hardware `t5`"), "{hw}");
    let down = verify(&[
        &manifest,
        "--public-key",
        &public,
        "--hardware",
        "t4-rev-a",
        "--installed",
        "4.10.0",
    ]);
    down.expect_code(2);
    assert!(down.stderr.contains("not a signed rollback"), "{down}");
    let old = verify(&[
        &manifest,
        "--public-key",
        &public,
        "--hardware",
        "t4-rev-a",
        "--installed",
        "3.2.1",
    ]);
    old.expect_code(2);
    assert!(old.stderr.contains("oldest version"), "{old}");

    // The wrong key-encryption key cannot open it, so it is not signed.
    let other_content = sandbox.root().join("other-content.key");
    run(
        &sandbox,
        &[
            "artifact",
            "keygen",
            "--content-key",
            "--out",
            path(&other_content),
        ],
    )
    .expect_code(0);
    let unreadable = run(
        &sandbox,
        &[
            "artifact",
            "sign",
            path(&kit.encrypted),
            "--firmware",
            "t4-app",
            "--version",
            "4.2.1",
            "--hardware",
            "t4-rev-a",
            "--signing-key",
            path(&kit.key),
            "--content-key",
            path(&other_content),
            "--out",
            path(&sandbox.root().join("never.json")),
        ],
    );
    unreadable.expect_code(2);
    assert!(!sandbox.root().join("never.json").exists());

    // A key is never overwritten.
    let again = run(&sandbox, &["artifact", "keygen", "--out", path(&kit.key)]);
    again.expect_code(2);
    assert!(again.stderr.contains("never overwritten"), "{again}");
}

#[test]
fn only_a_signed_rollback_takes_a_device_back() {
    let sandbox = Sandbox::new("artifact-rollback");
    let kit = kit(&sandbox, "ed25519");
    sign(&sandbox, &kit, "4.1.3", &["--rollback"]).expect_code(0);
    let back = run(
        &sandbox,
        &[
            "artifact",
            "verify",
            &manifest(&kit),
            "--public-key",
            &public(&kit),
            "--hardware",
            "t4-rev-a",
            "--installed",
            "4.2.0",
        ],
    );
    back.expect_code(0);
    assert!(back.stdout.contains("install: rollback"), "{back}");
}

#[test]
fn openssl_verifies_what_deployctl_signs_and_deployctl_signs_with_openssl_keys() {
    let sandbox = Sandbox::new("artifact-openssl");
    let dir = sandbox.root();
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl unavailable: skipped");
        return;
    }
    // A P-256 key made by openssl signs through deployctl...
    let key = dir.join("p256.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let public = dir.join("p256.pub");
    let exported = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .output()
        .unwrap();
    assert!(exported.status.success());
    let image = dir.join("plain.bin");
    std::fs::write(&image, b"an unencrypted image").unwrap();
    run(
        &sandbox,
        &[
            "artifact",
            "sign",
            path(&image),
            "--firmware",
            "t4-app",
            "--version",
            "1.0",
            "--hardware",
            "t4",
            "--signing-key",
            path(&key),
        ],
    )
    .expect_code(0);
    let manifest = format!("{}.manifest.json", image.display());
    run(
        &sandbox,
        &[
            "artifact",
            "verify",
            &manifest,
            "--public-key",
            path(&public),
            "--image",
            path(&image),
        ],
    )
    .expect_code(0);

    // ...and openssl checks the DSSE signature over the pre-authentication encoding.
    let envelope: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let b64 = |field: &str| {
        let out = Command::new("openssl")
            .args(["base64", "-d", "-A"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(field.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        out.stdout
    };
    let payload = b64(envelope["payload"].as_str().unwrap());
    let kind = envelope["payloadType"].as_str().unwrap();
    let mut message = format!("DSSEv1 {} {kind} {} ", kind.len(), payload.len()).into_bytes();
    message.extend_from_slice(&payload);
    std::fs::write(dir.join("message"), message).unwrap();
    std::fs::write(
        dir.join("sig"),
        b64(envelope["signatures"][0]["sig"].as_str().unwrap()),
    )
    .unwrap();
    let checked = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&public)
        .arg("-signature")
        .arg(dir.join("sig"))
        .arg(dir.join("message"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("Verified OK"),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

fn moto() -> Option<String> {
    crate::emulators::moto("artifact::*")
}

fn aws(sandbox: &Sandbox, moto: &str, args: &[&str]) -> Finished {
    let mut command = sandbox.command(args);
    command
        .env("AWS_ENDPOINT_URL", moto)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE");
    sandbox
        .spawn_command(command, args, None)
        .wait(COMMAND_TIMEOUT)
}

#[test]
fn kms_keys_sign_and_wrap_and_publish_pins_the_signed_bytes_in_a_versioned_bucket() {
    let Some(moto) = moto() else { return };
    let sandbox = Sandbox::new("artifact-kms");
    let bucket = format!("fw-{}", std::process::id());
    let keys = crate::audit_s3::python(
        &moto,
        &format!(
            "s3.create_bucket(Bucket='{bucket}')\n\
s3.put_bucket_versioning(Bucket='{bucket}', VersioningConfiguration={{'Status': 'Enabled'}})\n\
sign = kms.create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY')['KeyMetadata']['Arn']\n\
wrap = kms.create_key()['KeyMetadata']['Arn']\n\
print(sign, wrap)"
        ),
    );
    let mut keys = keys.split_whitespace();
    let (sign_key, wrap_key) = (
        keys.next().unwrap().to_owned(),
        keys.next().unwrap().to_owned(),
    );
    let image = sandbox.root().join("hub.img");
    std::fs::write(&image, vec![7u8; 65_536]).unwrap();
    let encrypted = sandbox.root().join("hub.img.enc");
    aws(
        &sandbox,
        &moto,
        &[
            "artifact",
            "encrypt",
            path(&image),
            "--out",
            path(&encrypted),
            "--kms-key",
            &wrap_key,
        ],
    )
    .expect_code(0);
    aws(
        &sandbox,
        &moto,
        &[
            "artifact",
            "sign",
            path(&encrypted),
            "--firmware",
            "hub-h2",
            "--version",
            "7.0.0",
            "--hardware",
            "h2",
            "--kms-key",
            &sign_key,
            "--content-kms",
        ],
    )
    .expect_code(0);
    let verified = aws(
        &sandbox,
        &moto,
        &[
            "--output",
            "json",
            "artifact",
            "verify",
            &format!("{}.manifest.json", encrypted.display()),
            "--kms-key",
            &sign_key,
            "--image",
            path(&encrypted),
            "--content-kms",
        ],
    );
    verified.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(
        report["signer"],
        sign_key.as_str(),
        "the KMS key's ARN signed it"
    );
    assert!(
        report["checked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "decryption"),
        "{report}"
    );

    let published = aws(
        &sandbox,
        &moto,
        &[
            "--output",
            "json",
            "artifact",
            "publish",
            path(&encrypted),
            "--to",
            &format!("s3://{bucket}/hub/7.0.0"),
            "--cdn",
            "https://d111.cloudfront.net",
            "--kms-key",
            &sign_key,
        ],
    );
    published.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&published.stdout).unwrap();
    let url = report["image"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://d111.cloudfront.net/hub/7.0.0/hub.img.enc?versionId="),
        "{url}"
    );
    let stored = crate::audit_s3::python(
        &moto,
        &format!(
            "import hashlib\nv = '{}'.split('versionId=')[1]\n\
print(hashlib.sha256(s3.get_object(Bucket='{bucket}', Key='hub/7.0.0/hub.img.enc', VersionId=v)['Body'].read()).hexdigest())",
            url
        ),
    );
    let local = Command::new("sha256sum").arg(&encrypted).output().unwrap();
    assert_eq!(
        stored.trim(),
        String::from_utf8_lossy(&local.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    );

    // A second publish to the same place is refused; nothing is replaced.
    aws(
        &sandbox,
        &moto,
        &[
            "artifact",
            "publish",
            path(&encrypted),
            "--to",
            &format!("s3://{bucket}/hub/7.0.0"),
            "--kms-key",
            &sign_key,
        ],
    )
    .expect_code(2);
    // An http:// CDN is refused before anything is uploaded.
    aws(
        &sandbox,
        &moto,
        &[
            "artifact",
            "publish",
            path(&encrypted),
            "--to",
            &format!("s3://{bucket}/x"),
            "--cdn",
            "http://cdn",
            "--kms-key",
            &sign_key,
        ],
    )
    .expect_code(2);
    let trail = aws(
        &sandbox,
        &moto,
        &["audit", "show", "--action", "artifact.published"],
    );
    assert!(trail.stdout.contains("artifact.published"), "{trail}");
}
