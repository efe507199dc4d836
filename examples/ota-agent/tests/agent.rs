//! The agent against the IoT Jobs emulator, with waves dispatched by the
//! fleet adapter itself and firmware in moto's S3 fetched through the
//! emulator's presigned HTTPS URLs: what a real device does, checked
//! device by device. Skipped with a message when the emulators (or the
//! test CA) are not there; `bash tests/run.sh` starts them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::{Action, IdempotencyKey, Target};
use deployctl_aws::testing::{MotoAccount, emulator, sdk_config};
use deployctl_aws_iot::{Clients, FleetTarget};
use deployctl_firmware::cipher::{self, LocalKeys};
use deployctl_firmware::keys::{Algorithm, LocalSigner};
use deployctl_firmware::manifest::{Encryption, FORMAT, Image, Manifest};
use deployctl_ota_agent::{Agent, Health, Identity, Outcome, Slots, https_client};
use deployctl_plan::model::{
    Artifact, ArtifactSource, FirmwareSignature, FleetSelector, FleetSpec, SignatureAlgorithm,
    SignatureSource, StrategyKind, Wave, WaveSize, Waves,
};

const ROLE: &str = "arn:aws:iam::123456789012:role/firmware-download";

struct Urls {
    iot: String,
    moto: String,
    ca: PathBuf,
}

fn urls(test: &str) -> Option<Urls> {
    Some(Urls {
        iot: emulator("DEPLOYCTL_TEST_IOTJOBS_URL", test)?,
        moto: emulator("DEPLOYCTL_TEST_MOTO_URL", test)?,
        ca: emulator("DEPLOYCTL_TEST_TLS_CA", test)?.into(),
    })
}

static N: AtomicU32 = AtomicU32::new(0);

/// A fleet of `devices` in a fresh account, firmware 4.2.0 and the signed
/// 4.1.3 rollback published (encrypted under a local key-encryption key).
struct World {
    urls: Urls,
    account: MotoAccount,
    iot: aws_sdk_iot::Client,
    s3: aws_sdk_s3::Client,
    group: String,
    dir: PathBuf,
    signer: LocalSigner,
    keys_text: String,
    release: Artifact,
    stable: Artifact,
    waves: Waves,
    spec: FleetSpec,
}

impl World {
    async fn new(urls: Urls, devices: u32) -> World {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let account = MotoAccount::fresh();
        let iot_sdk = sdk_config(&urls.iot).await;
        let moto_sdk = sdk_config(&urls.moto).await;
        let iot = aws_sdk_iot::Client::from_conf(
            deployctl_aws_iot::iot_config(&iot_sdk)
                .interceptor(account.clone())
                .build(),
        );
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&moto_sdk)
                .force_path_style(true)
                .interceptor(account.clone())
                .build(),
        );
        let dir = std::env::temp_dir().join(format!("ota-agent-it-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let group = format!("t4-{n}");
        iot.create_thing_group()
            .thing_group_name(&group)
            .send()
            .await
            .unwrap();
        for i in 0..devices {
            let thing = format!("{group}-{i}");
            iot.create_thing()
                .thing_name(&thing)
                .thing_type_name("t4-rev-a")
                .send()
                .await
                .unwrap();
            iot.add_thing_to_thing_group()
                .thing_group_name(&group)
                .thing_name(&thing)
                .send()
                .await
                .unwrap();
        }
        let bucket = format!("fw-{}", account.0);
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let (signer, _) = LocalSigner::generate(Algorithm::Ed25519).unwrap();
        std::fs::write(dir.join("firmware.pub"), signer.public_key().to_pem()).unwrap();
        let (_, keys_text) = LocalKeys::generate().unwrap();
        let mut world = World {
            urls,
            account,
            iot,
            s3,
            group: group.clone(),
            dir,
            signer,
            keys_text,
            release: placeholder(),
            stable: placeholder(),
            waves: Waves {
                waves: vec![Wave {
                    size: WaveSize::Percent(100.0),
                    approval: None,
                }],
                success_threshold: 90.0,
                abort_failure_threshold: 50.0,
                abort_min_devices: 10,
                device_timeout: std::time::Duration::from_secs(600),
                max_devices_per_minute: 100,
                bake_time: std::time::Duration::ZERO,
                gates: Vec::new(),
            },
            spec: FleetSpec {
                devices: FleetSelector::ThingGroups(vec![group]),
                region: Some("us-east-1".into()),
                download_role: Some(ROLE.into()),
                continuous: false,
            },
        };
        let release = world.publish(&bucket, "4.2.0", false, &world.signer).await;
        let stable = world.publish(&bucket, "4.1.3", true, &world.signer).await;
        world.release = release;
        world.stable = stable;
        world
    }

    async fn publish(
        &self,
        bucket: &str,
        version: &str,
        rollback: bool,
        signer: &LocalSigner,
    ) -> Artifact {
        let plain = format!("t4-app {version} ").repeat(1000).into_bytes();
        let keys = LocalKeys::from_text(&self.keys_text).unwrap();
        let image = cipher::encrypt(&plain, &keys).await.unwrap();
        let manifest = Manifest {
            format: FORMAT.into(),
            firmware: "t4-app".into(),
            version: version.into(),
            hardware: vec!["t4-rev-a".into()],
            image: Image {
                sha256: deployctl_firmware::sha256_hex(&image),
                size: image.len() as u64,
                encryption: Some(Encryption {
                    algorithm: cipher::ALGORITHM.into(),
                    key_id: cipher::Header::read(&image).unwrap().wrapped.key_id,
                    plaintext_sha256: deployctl_firmware::sha256_hex(&plain),
                }),
            },
            min_version: None,
            rollback,
            signed_at: "2026-12-03T00:00:00.000Z".into(),
        };
        let envelope = deployctl_firmware::envelope::sign(&manifest, signer)
            .await
            .unwrap();
        let prefix = format!(
            "s3://{bucket}/t4/{version}{}",
            if rollback { "-rollback" } else { "" }
        );
        deployctl_aws_firmware::bucket::publish(
            &self.s3,
            &prefix,
            "t4-app.bin",
            &image,
            envelope.as_bytes(),
            None,
        )
        .await
        .unwrap();
        Artifact {
            version: version.into(),
            source: ArtifactSource::Firmware {
                location: format!("{prefix}/t4-app.bin"),
                sha256: manifest.image.sha256.clone(),
                manifest: format!("{prefix}/t4-app.bin.manifest.json"),
                signature: FirmwareSignature {
                    algorithm: SignatureAlgorithm::Ed25519,
                    source: SignatureSource::PublicKey("firmware.pub".into()),
                },
            },
        }
    }

    async fn fleet(&self) -> FleetTarget {
        let moto_sdk = sdk_config(&self.urls.moto).await;
        let release = PlanRelease {
            artifact: Some(&self.release),
            pinned_stable: Some(&self.stable),
            strategy: Some(StrategyKind::Waves),
            waves: Some(&self.waves),
            plan_dir: &self.dir,
        };
        FleetTarget::with_clients(
            "fleet",
            &self.spec,
            &release,
            "us-east-1",
            Clients {
                iot: self.iot.clone(),
                s3: self.s3.clone(),
                kms: deployctl_aws_firmware::kms_client(&moto_sdk),
            },
        )
        .unwrap()
    }

    /// The agent of device `i`, signing with `access_key`.
    async fn agent(&self, i: u32, access_key: &str, fail: bool) -> Agent {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                access_key, "secret", None, None, "device",
            ))
            .endpoint_url(&self.urls.iot)
            .load()
            .await;
        let jobs = aws_sdk_iotjobsdataplane::Client::from_conf(
            aws_sdk_iotjobsdataplane::config::Builder::from(&sdk)
                .interceptor(self.account.clone())
                .build(),
        );
        let ca = std::fs::read(&self.urls.ca).unwrap();
        Agent::new(
            Identity {
                thing: format!("{}-{i}", self.group),
                firmware: "t4-app".into(),
                hardware: "t4-rev-a".into(),
            },
            jobs,
            https_client(Some(&ca)).unwrap(),
            self.signer.public_key().clone(),
            Box::new(LocalKeys::from_text(&self.keys_text).unwrap()),
            Slots::open(&self.dir.join(format!("device-{i}")), "4.1.3").unwrap(),
            Box::new(move |_| if fail { Err("watchdog".into()) } else { Ok(()) }),
            Box::new(|_| Health {
                crashes: 0,
                resets: 0,
                score: 95,
            }),
        )
    }
}

fn placeholder() -> Artifact {
    Artifact {
        version: String::new(),
        source: ArtifactSource::Label,
    }
}

#[tokio::test]
async fn devices_install_through_presigned_https_and_fall_back_when_the_self_test_fails() {
    let Some(urls) =
        urls("devices_install_through_presigned_https_and_fall_back_when_the_self_test_fails")
    else {
        return;
    };
    let world = World::new(urls, 3).await;
    let fleet = world.dispatch(3, "run-1/ota/1").await;
    let good = world.agent(0, "testing", false).await;
    let bad = world.agent(1, "testing", true).await;
    match good.poll_once().await.unwrap() {
        Outcome::Succeeded { version, .. } => assert_eq!(version, "4.2.0"),
        other => panic!("{other:?}"),
    }
    assert_eq!(good.slots().running().unwrap(), "4.2.0");
    assert!(!good.slots().state().unwrap().trial);
    match bad.poll_once().await.unwrap() {
        Outcome::Failed { reason, .. } => assert!(reason.contains("back on 4.1.3"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(bad.slots().running().unwrap(), "4.1.3");
    assert_eq!(good.poll_once().await.unwrap(), Outcome::Idle);
    let progress = fleet.observe().await.unwrap().waves.unwrap();
    assert_eq!((progress.succeeded, progress.failed), (1, 1));
    // The rollback reaches the device that took 4.2.0, which accepts the
    // older version only because its manifest is a signed rollback.
    fleet
        .apply(
            &Action::Rollback { to: None },
            &IdempotencyKey("run-1/ota/rollback".into()),
        )
        .await
        .unwrap();
    match good.poll_once().await.unwrap() {
        Outcome::Succeeded { version, .. } => assert_eq!(version, "4.1.3"),
        other => panic!("{other:?}"),
    }
    assert_eq!(good.slots().running().unwrap(), "4.1.3");
    assert_eq!(
        bad.poll_once().await.unwrap(),
        Outcome::Idle,
        "the failed device was not sent the rollback"
    );
}

impl World {
    /// The fleet target, verified, with its first wave of `devices` out.
    async fn dispatch(&self, devices: u32, key: &str) -> FleetTarget {
        let fleet = self.fleet().await;
        fleet.preflight().await.unwrap();
        fleet
            .apply(
                &Action::StartWave { index: 0, devices },
                &IdempotencyKey(key.into()),
            )
            .await
            .unwrap();
        fleet
    }

    /// A job for device `i` with a hand-made document (presigned URLs).
    async fn job(&self, id: &str, i: u32, document: serde_json::Value) {
        let thing = format!(
            "arn:aws:iot:us-east-1:{}:thing/{}-{i}",
            self.account.0, self.group
        );
        self.iot
            .create_job()
            .job_id(id)
            .targets(thing)
            .document(document.to_string())
            .presigned_url_config(
                aws_sdk_iot::types::PresignedUrlConfig::builder()
                    .role_arn(ROLE)
                    .expires_in_sec(600)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    fn placeholder(&self, artifact: &Artifact, manifest: bool) -> String {
        let ArtifactSource::Firmware {
            location,
            manifest: m,
            ..
        } = &artifact.source
        else {
            unreachable!()
        };
        let url = if manifest { m } else { location };
        let (bucket, key) = url.trim_start_matches("s3://").split_once('/').unwrap();
        format!("${{aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/{bucket}/{key}}}")
    }

    async fn manifest_sha(&self, artifact: &Artifact) -> String {
        let ArtifactSource::Firmware { manifest, .. } = &artifact.source else {
            unreachable!()
        };
        let object = manifest.parse().unwrap();
        deployctl_firmware::sha256_hex(
            &deployctl_aws_firmware::bucket::fetch(&self.s3, &object)
                .await
                .unwrap(),
        )
    }
}

fn document(
    version: &str,
    manifest_url: &str,
    manifest_sha: &str,
    image_url: &str,
) -> serde_json::Value {
    serde_json::json!({
        "operation": deployctl_ota_agent::OPERATION, "firmware": "t4-app", "version": version, "rollback": false,
        "manifest": {"url": manifest_url, "sha256": manifest_sha},
        "image": {"url": image_url, "sha256": "0", "size": 0},
    })
}

#[tokio::test]
async fn what_a_device_refuses_is_reported_rejected_and_nothing_is_written() {
    let Some(urls) = urls("what_a_device_refuses_is_reported_rejected_and_nothing_is_written")
    else {
        return;
    };
    let world = World::new(urls, 1).await;
    let agent = world.agent(0, "testing", false).await;
    let sha = world.manifest_sha(&world.release).await;
    let manifest = world.placeholder(&world.release, true);
    let image = world.placeholder(&world.release, false);
    let rejected = async |job: &str, doc: serde_json::Value| {
        world.job(job, 0, doc).await;
        match agent.poll_once().await.unwrap() {
            Outcome::Rejected { reason, .. } => reason,
            other => panic!("{job}: {other:?}"),
        }
    };
    let plain = rejected(
        "plain-http",
        document("4.2.0", "http://fw.example/t4.manifest.json", &sha, &image),
    )
    .await;
    assert!(plain.contains("HTTPS"), "{plain}");
    let swapped = rejected(
        "other-manifest",
        document("4.2.0", &manifest, &"0".repeat(64), &image),
    )
    .await;
    assert!(swapped.contains("not the one the job names"), "{swapped}");
    // 4.1.3 without the rollback flag would be a downgrade; the device is
    // on 4.1.3 so send it something older than what it runs: re-sign 4.1.3
    // as 4.0.0 by another key, which also fails the signature.
    let (other, _) = LocalSigner::generate(Algorithm::Ed25519).unwrap();
    let bucket = format!("fw-{}", world.account.0);
    let forged = world.publish(&bucket, "4.3.0", false, &other).await;
    let forged_sha = world.manifest_sha(&forged).await;
    let forged_doc = document(
        "4.3.0",
        &world.placeholder(&forged, true),
        &forged_sha,
        &world.placeholder(&forged, false),
    );
    let unsigned = rejected("forged", forged_doc).await;
    assert!(unsigned.contains("signature does not verify"), "{unsigned}");
    assert_eq!(agent.slots().running().unwrap(), "4.1.3");
    assert!(!agent.slots().state().unwrap().trial);
    let described = world
        .iot
        .describe_job_execution()
        .job_id("forged")
        .thing_name(format!("{}-0", world.group))
        .send()
        .await
        .unwrap();
    let execution = described.execution().unwrap();
    assert_eq!(execution.status().map(|s| s.as_str()), Some("REJECTED"));
}

#[tokio::test]
async fn the_data_plane_answers_a_device_only_with_its_own_credentials() {
    let Some(urls) = urls("the_data_plane_answers_a_device_only_with_its_own_credentials") else {
        return;
    };
    let world = World::new(urls, 2).await;
    for i in 0..2 {
        let body = serde_json::json!({"account": world.account.0, "thing": format!("{}-{i}", world.group), "accessKeyId": format!("AKIADEVICE{i}")});
        let status = std::process::Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-d",
                &body.to_string(),
                &format!("{}/_emulator/device-credentials", world.urls.iot),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    world.dispatch(2, "run-c/ota/1").await;
    // Device 0 signing with device 1's credentials is refused.
    let impostor = world.agent(0, "AKIADEVICE1", false).await;
    let error = impostor.poll_once().await.unwrap_err();
    assert!(error.to_string().contains("ForbiddenException"), "{error}");
    let own = world.agent(0, "AKIADEVICE0", false).await;
    assert!(matches!(
        own.poll_once().await.unwrap(),
        Outcome::Succeeded { .. }
    ));
    // A download URL that was never issued is refused by the firmware host.
    let downloads: serde_json::Value = serde_json::from_slice(
        &std::process::Command::new("curl")
            .args(["-s", &format!("{}/_emulator/downloads", world.urls.iot)])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let base = downloads["url"]
        .as_str()
        .expect("the emulator serves downloads");
    let client = https_client(Some(&std::fs::read(&world.urls.ca).unwrap())).unwrap();
    let denied = client
        .get(format!("{base}/presigned/not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 403);
}

#[tokio::test]
async fn the_agent_binary_takes_its_job_and_reports() {
    let Some(urls) = urls("the_agent_binary_takes_its_job_and_reports") else {
        return;
    };
    let world = World::new(urls, 1).await;
    world.dispatch(1, "run-b/ota/1").await;
    std::fs::write(world.dir.join("content.key"), &world.keys_text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ota-agent"))
        .args([
            "--thing",
            &format!("{}-0", world.group),
            "--firmware",
            "t4-app",
            "--hardware",
            "t4-rev-a",
        ])
        .arg("--state")
        .arg(world.dir.join("binary-device"))
        .args([
            "--factory-version",
            "4.1.3",
            "--once",
            "--endpoint",
            &world.urls.iot,
        ])
        .arg("--public-key")
        .arg(world.dir.join("firmware.pub"))
        .arg("--content-key")
        .arg(world.dir.join("content.key"))
        .arg("--ca")
        .arg(&world.urls.ca)
        // The emulator takes a 12-digit access key ID as the account.
        .env("AWS_ACCESS_KEY_ID", &world.account.0)
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap_or("{}")).unwrap();
    assert_eq!(
        (line["outcome"].as_str(), line["running"].as_str()),
        (Some("succeeded"), Some("4.2.0")),
        "{line}"
    );
}
