//! One test's world: a fresh account in the IoT Jobs emulator (its fleet
//! of things in one group) and in moto (the firmware bucket), signed
//! firmware published to it, and the devices' side of IoT Jobs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_iot::types::AttributePayload;
use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::iam::{Scope, Statement};
use deployctl_aws::testing::{CallRecorder, MotoAccount, emulator, sdk_config};
use deployctl_aws_iot::Clients;
use deployctl_aws_iot::FleetTarget;
use deployctl_firmware::keys::{Algorithm, LocalSigner};
use deployctl_firmware::manifest::{FORMAT, Image, Manifest};
use deployctl_plan::model::{
    Artifact, ArtifactSource, FirmwareSignature, FleetSelector, FleetSpec, SignatureAlgorithm,
    SignatureSource, StrategyKind, Wave, WaveSize, Waves,
};

pub const DOWNLOAD_ROLE: &str = "arn:aws:iam::123456789012:role/firmware-download";

/// The emulators' URLs: (IoT Jobs, moto).
pub struct Urls {
    iot: String,
    moto: String,
}

/// Both emulators' URLs, or `None` (and why the test is skipped).
pub fn emulators(test: &str) -> Option<Urls> {
    Some(Urls {
        iot: emulator("DEPLOYCTL_TEST_IOTJOBS_URL", test)?,
        moto: emulator("DEPLOYCTL_TEST_MOTO_URL", test)?,
    })
}

static WORLDS: AtomicU32 = AtomicU32::new(0);

/// What a plan variant changes about the published firmware.
#[derive(Debug, Default, Clone)]
pub struct Variant {
    pub release_signed_by_other_key: bool,
    pub release_image_tampered: bool,
    pub stable_not_rollback: bool,
}

/// The plan's side of a fleet target.
pub struct Plan {
    spec: FleetSpec,
    release: Artifact,
    stable: Artifact,
    waves: Waves,
    dir: PathBuf,
}

pub struct World {
    pub account: MotoAccount,
    pub group: String,
    region: String,
    iot: aws_sdk_iot::Client,
    s3: aws_sdk_s3::Client,
    devices: aws_sdk_iotjobsdataplane::Client,
    target_clients: Clients,
    signer: LocalSigner,
    bucket: String,
    dir: PathBuf,
    n: u32,
}

impl World {
    pub async fn new(urls: &Urls, devices: u32) -> World {
        World::build(urls, devices, None).await
    }

    /// A world whose target's calls are recorded.
    pub async fn recorded(urls: &Urls, devices: u32, calls: CallRecorder) -> World {
        World::build(urls, devices, Some(calls)).await
    }

    async fn build(urls: &Urls, devices: u32, calls: Option<CallRecorder>) -> World {
        let n = WORLDS.fetch_add(1, Ordering::SeqCst);
        let account = MotoAccount::fresh();
        let iot_sdk = sdk_config(&urls.iot).await;
        let moto_sdk = sdk_config(&urls.moto).await;
        let iot_client = |recorded: bool| {
            let mut config = deployctl_aws_iot::iot_config(&iot_sdk).interceptor(account.clone());
            if let (true, Some(calls)) = (recorded, &calls) {
                config = config.interceptor(calls.clone());
            }
            aws_sdk_iot::Client::from_conf(config.build())
        };
        let s3_client = |recorded: bool| {
            let mut config = aws_sdk_s3::config::Builder::from(&moto_sdk)
                .force_path_style(true)
                .interceptor(account.clone());
            if let (true, Some(calls)) = (recorded, &calls) {
                config = config.interceptor(calls.clone());
            }
            aws_sdk_s3::Client::from_conf(config.build())
        };
        // The trusted key is a local file: KMS is never called.
        let kms = deployctl_aws_firmware::kms_client(&moto_sdk);
        let devices_client = aws_sdk_iotjobsdataplane::Client::from_conf(
            aws_sdk_iotjobsdataplane::config::Builder::from(&iot_sdk)
                .interceptor(account.clone())
                .build(),
        );
        let dir =
            std::env::temp_dir().join(format!("deployctl-aws-iot-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (signer, _) = LocalSigner::generate(Algorithm::Ed25519).unwrap();
        std::fs::write(dir.join("firmware.pub"), signer.public_key().to_pem()).unwrap();
        let world = World {
            group: format!("thermostats-{n}"),
            region: "us-east-1".into(),
            iot: iot_client(false),
            s3: s3_client(false),
            devices: devices_client,
            target_clients: Clients {
                iot: iot_client(true),
                s3: s3_client(true),
                kms,
            },
            signer,
            bucket: format!("fw-{}-{n}", account.0),
            account,
            dir,
            n,
        };
        world
            .iot
            .create_thing_group()
            .thing_group_name(&world.group)
            .send()
            .await
            .expect("CreateThingGroup");
        for i in 0..devices {
            world
                .add_device(&format!("t4-{n}-{i:04}"), Some("t4-rev-a"))
                .await;
        }
        world
            .s3
            .create_bucket()
            .bucket(&world.bucket)
            .send()
            .await
            .expect("CreateBucket");
        world
            .s3
            .put_bucket_versioning()
            .bucket(&world.bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("PutBucketVersioning");
        world
    }

    pub async fn add_device(&self, name: &str, model: Option<&str>) {
        let mut thing = self
            .iot
            .create_thing()
            .thing_name(name)
            .attribute_payload(AttributePayload::builder().build());
        if let Some(model) = model {
            thing = thing.thing_type_name(model);
        }
        thing.send().await.expect("CreateThing");
        self.iot
            .add_thing_to_thing_group()
            .thing_group_name(&self.group)
            .thing_name(name)
            .send()
            .await
            .expect("AddThingToThingGroup");
    }

    pub fn signer_id(&self) -> String {
        deployctl_firmware::keys::Signer::key_id(&self.signer)
    }

    /// Publishes one firmware under `prefix`; returns the plan's artifact.
    async fn publish(
        &self,
        prefix: &str,
        version: &str,
        rollback: bool,
        signer: &LocalSigner,
        tamper: bool,
    ) -> Artifact {
        let image: Vec<u8> = format!("t4-app {version} image ").repeat(200).into_bytes();
        let manifest = Manifest {
            format: FORMAT.into(),
            firmware: "t4-app".into(),
            version: version.into(),
            hardware: vec!["t4-rev-a".into(), "t4-rev-b".into()],
            image: Image {
                sha256: deployctl_firmware::sha256_hex(&image),
                size: image.len() as u64,
                encryption: None,
            },
            min_version: None,
            rollback,
            signed_at: "2026-12-03T00:00:00.000Z".into(),
        };
        let envelope = deployctl_firmware::envelope::sign(&manifest, signer)
            .await
            .unwrap();
        let mut shipped = image.clone();
        if tamper {
            shipped[10] ^= 1;
        }
        let location = format!("s3://{}/{prefix}", self.bucket);
        deployctl_aws_firmware::bucket::publish(
            &self.s3,
            &location,
            "t4-app.bin",
            &shipped,
            envelope.as_bytes(),
            None,
        )
        .await
        .expect("publish");
        Artifact {
            version: version.into(),
            source: ArtifactSource::Firmware {
                location: format!("{location}/t4-app.bin"),
                sha256: manifest.image.sha256.clone(),
                manifest: format!("{location}/t4-app.bin.manifest.json"),
                signature: FirmwareSignature {
                    algorithm: SignatureAlgorithm::Ed25519,
                    source: SignatureSource::PublicKey("firmware.pub".into()),
                },
            },
        }
    }

    /// The plan: 4.1.3 (signed rollback) → 4.2.0, waves as the example's.
    pub async fn plan(&self) -> Plan {
        self.plan_with(|_| {}).await
    }

    pub async fn plan_with(&self, change: impl FnOnce(&mut Variant)) -> Plan {
        let mut variant = Variant::default();
        change(&mut variant);
        static PLANS: AtomicU32 = AtomicU32::new(0);
        let p = PLANS.fetch_add(1, Ordering::SeqCst);
        let (other, _) = LocalSigner::generate(Algorithm::Ed25519).unwrap();
        let release_signer = if variant.release_signed_by_other_key {
            &other
        } else {
            &self.signer
        };
        let release = self
            .publish(
                &format!("p{p}/4.2.0"),
                "4.2.0",
                false,
                release_signer,
                variant.release_image_tampered,
            )
            .await;
        let stable = self
            .publish(
                &format!("p{p}/4.1.3"),
                "4.1.3",
                !variant.stable_not_rollback,
                &self.signer,
                false,
            )
            .await;
        Plan {
            spec: FleetSpec {
                devices: FleetSelector::ThingGroups(vec![self.group.clone()]),
                region: Some(self.region.clone()),
                download_role: Some(DOWNLOAD_ROLE.into()),
                continuous: false,
            },
            release,
            stable,
            waves: Waves {
                waves: [1.0, 9.0, 40.0, 50.0]
                    .into_iter()
                    .map(|percent| Wave {
                        size: WaveSize::Percent(percent),
                        approval: None,
                    })
                    .collect(),
                success_threshold: 98.0,
                abort_failure_threshold: 5.0,
                abort_min_devices: 25,
                device_timeout: std::time::Duration::from_secs(2 * 3600),
                max_devices_per_minute: 200,
                bake_time: std::time::Duration::ZERO,
                gates: Vec::new(),
            },
            dir: self.dir.clone(),
        }
    }

    pub async fn target(&self, plan: &Plan) -> FleetTarget {
        let release = PlanRelease {
            artifact: Some(&plan.release),
            pinned_stable: Some(&plan.stable),
            strategy: Some(StrategyKind::Waves),
            waves: Some(&plan.waves),
            plan_dir: &plan.dir,
        };
        FleetTarget::with_clients(
            format!("fleet-{}", self.n),
            &plan.spec,
            &release,
            &self.region,
            self.target_clients.clone(),
        )
        .expect("the target builds")
    }

    pub fn iam_statements(&self, plan: &Plan) -> Vec<Statement> {
        let scope = Scope {
            partition: "aws".into(),
            account: self.account.0.clone(),
            default_region: self.region.clone(),
        };
        deployctl_aws_iot::iam::statements(&plan.spec, &[&plan.release, &plan.stable], &scope)
    }

    /// The account's deployctl job IDs, sorted.
    pub async fn job_ids(&self) -> Vec<String> {
        let listed = self.iot.list_jobs().send().await.expect("ListJobs");
        let mut ids: Vec<String> = listed
            .jobs()
            .iter()
            .filter_map(|j| j.job_id().map(str::to_owned))
            .filter(|id| id.starts_with("deployctl-"))
            .collect();
        ids.sort();
        ids
    }

    pub async fn group_members(&self, group: &str) -> BTreeSet<String> {
        let listed = self
            .iot
            .list_things_in_thing_group()
            .thing_group_name(group)
            .max_results(250)
            .send()
            .await
            .expect("ListThingsInThingGroup");
        listed.things().iter().cloned().collect()
    }

    /// The things a job was aimed at, in the order the service lists its
    /// executions (the emulator: creation order).
    pub async fn execution_order(&self, job_id: &str) -> Vec<String> {
        let mut things = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .iot
                .list_job_executions_for_job()
                .job_id(job_id)
                .max_results(100)
                .set_next_token(token)
                .send()
                .await
                .expect("ListJobExecutionsForJob");
            things.extend(
                page.execution_summaries()
                    .iter()
                    .filter_map(|e| e.thing_arn())
                    .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_owned()),
            );
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return things;
            }
        }
    }

    /// A job's settings as the tests check them.
    pub async fn describe_job(&self, job_id: &str) -> serde_json::Value {
        let job = self
            .iot
            .describe_job()
            .job_id(job_id)
            .send()
            .await
            .expect("DescribeJob");
        let job = job.job().expect("a job");
        let document = self
            .iot
            .get_job_document()
            .job_id(job_id)
            .send()
            .await
            .expect("GetJobDocument");
        let abort = job.abort_config().map(|a| {
            let c = &a.criteria_list()[0];
            format!(
                "{} {} {} {}",
                c.failure_type().as_str(),
                c.action().as_str(),
                c.threshold_percentage(),
                c.min_number_of_executed_things()
            )
        });
        serde_json::json!({
            "status": job.status().map(|s| s.as_str()),
            "forceCanceled": job.force_canceled(),
            "rollout": job.job_executions_rollout_config().and_then(|r| r.maximum_per_minute()),
            "abort": abort,
            "timeout": job.timeout_config().and_then(|t| t.in_progress_timeout_in_minutes()),
            "presignRole": job.presigned_url_config().and_then(|p| p.role_arn()),
            "document": document.document(),
        })
    }

    /// The device asks for its next job and reports `status` on it
    /// (`IN_PROGRESS`: only starts it).
    pub async fn device_reports(&self, thing: &str, status: &str) {
        self.report(thing, status, false).await;
    }

    /// The device installs the update and reports it, with an anomaly
    /// (its agent saw crashes after the reboot).
    pub async fn device_reports_anomaly(&self, thing: &str) {
        self.report(thing, "SUCCEEDED", true).await;
    }

    async fn report(&self, thing: &str, status: &str, anomaly: bool) {
        use aws_sdk_iotjobsdataplane::types::JobExecutionStatus;
        let started = self
            .devices
            .start_next_pending_job_execution()
            .thing_name(thing)
            .send()
            .await
            .expect("StartNextPendingJobExecution");
        let execution = started.execution().expect("a pending job");
        if status == "IN_PROGRESS" {
            return;
        }
        let mut update = self
            .devices
            .update_job_execution()
            .thing_name(thing)
            .job_id(execution.job_id().unwrap())
            .status(JobExecutionStatus::from(status));
        if anomaly {
            update = update
                .status_details("anomaly", "true")
                .status_details("crashes", "4");
        }
        update.send().await.expect("UpdateJobExecution");
    }

    /// The document of the device's next job, if it has one.
    pub async fn next_job(&self, thing: &str) -> Option<serde_json::Value> {
        let described = self
            .devices
            .describe_job_execution()
            .thing_name(thing)
            .job_id("$next")
            .include_job_document(true)
            .send()
            .await
            .expect("DescribeJobExecution $next");
        let document = described.execution()?.job_document()?.to_owned();
        Some(serde_json::from_str(&document).expect("a JSON job document"))
    }
}
