//! Fleet OTA through the binary, end to end: firmware made and published
//! with `deployctl artifact` (KMS-signed, KMS-wrapped content key, moto's
//! S3 and KMS), `examples/fleet-ota-waves.yaml` applied with its names and
//! endpoints adapted (and its hours made seconds), AWS IoT served by the
//! repo's IoT Jobs emulator, and a fleet of simulated devices
//! (`tests/fleet/devices.py`) on the IoT Jobs data plane. Skipped with a
//! message when the emulators are not running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sandbox::{COMMAND_TIMEOUT, Finished, Sandbox, wait_until};

const EXAMPLE: &str = "examples/fleet-ota-waves.yaml";

fn urls(test: &str) -> Option<[String; 2]> {
    crate::emulators::urls(
        test,
        ["DEPLOYCTL_TEST_MOTO_URL", "DEPLOYCTL_TEST_IOTJOBS_URL"],
    )
}

/// One test's fleet: its thing group of devices in the IoT Jobs emulator,
/// its bucket and keys in moto, firmware 4.2.0 and the signed 4.1.3
/// rollback published, and the plan adapted from the example.
struct Fleet {
    sandbox: Sandbox,
    moto: String,
    iot: String,
    group: String,
    bucket: String,
    sign_alias: String,
    plan: PathBuf,
    /// The published images' SHA-256: the release's and the rollback's.
    digests: (String, String),
}

static FLEETS: AtomicU32 = AtomicU32::new(0);

impl Fleet {
    fn new(label: &str, devices: u32) -> Option<Fleet> {
        let [moto, iot] = urls(&format!("fleet_e2e::{label}"))?;
        let n = FLEETS.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let fleet = Fleet {
            sandbox: Sandbox::new(&format!("fleet-{label}")),
            group: format!("thermostat-t4-{label}-{id}"),
            bucket: format!("fw-{label}-{id}"),
            sign_alias: format!("alias/fw-sign-{label}-{id}"),
            plan: PathBuf::new(),
            digests: Default::default(),
            moto,
            iot,
        };
        let keys = fleet.moto_python(&format!(
            "s3.create_bucket(Bucket='{bucket}')\n\
s3.put_bucket_versioning(Bucket='{bucket}', VersioningConfiguration={{'Status': 'Enabled'}})\n\
sign = kms.create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY')['KeyMetadata']['KeyId']\n\
kms.create_alias(AliasName='{alias}', TargetKeyId=sign)\n\
other = kms.create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY')['KeyMetadata']['KeyId']\n\
kms.create_alias(AliasName='{alias}-other', TargetKeyId=other)\n\
wrap = kms.create_key()['KeyMetadata']['Arn']\n\
sns = boto3.client('sns', **kw)\n\
for topic in ('firmware-releases', 'firmware-oncall-page'): sns.create_topic(Name=topic)\n\
cw = boto3.client('cloudwatch', **kw)\n\
for alarm in ('thermostat-t4-crash-rate', 'thermostat-t4-watchdog-resets'): cw.put_metric_alarm(AlarmName=alarm, MetricName='Crashes', Namespace='T4', Statistic='Sum', Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator='GreaterThanThreshold'); cw.set_alarm_state(AlarmName=alarm, StateValue='OK', StateReason='quiet fleet')\n\
print(wrap)",
            bucket = fleet.bucket,
            alias = fleet.sign_alias,
        ));
        let wrap_key = keys.trim().to_owned();
        fleet.iot_python(&format!(
            "iot.create_thing_group(thingGroupName='{group}')\n\
for i in range({devices}): name = '{group}-dev-%04d' % i; iot.create_thing(thingName=name, thingTypeName='t4-rev-a' if i % 2 else 't4-rev-b'); iot.add_thing_to_thing_group(thingGroupName='{group}', thingName=name)",
            group = fleet.group,
        ));
        let release = fleet.firmware("4.2.0", false, &wrap_key);
        let rollback = fleet.firmware("4.1.3", true, &wrap_key);
        let mut fleet = fleet;
        fleet.digests = (release, rollback);
        let text = fleet.adapted_text(&fleet.sign_alias);
        fleet.plan = fleet.write_plan("fleet.yaml", &without_signoff(text));
        Some(fleet)
    }

    fn moto_python(&self, script: &str) -> String {
        crate::audit_s3::python(&self.moto, script)
    }

    fn iot_python(&self, script: &str) -> String {
        crate::emulators::python(
            &[("IOT", &self.iot)],
            "import boto3, json, os\n\
iot = boto3.client('iot', endpoint_url=os.environ['IOT'], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n",
            script,
        )
    }

    /// `deployctl ARGS` with moto as AWS and the emulator as AWS IoT.
    fn run(&self, args: &[&str]) -> Finished {
        self.sandbox
            .spawn_command(self.command(args), args, None)
            .wait(COMMAND_TIMEOUT)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.sandbox.command(args);
        command
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_ENDPOINT_URL_IOT", &self.iot)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("DEPLOYCTL_AUDIT_SHIP_DIR");
        command
    }

    /// Encrypts, signs and publishes `version`; returns the published
    /// image's SHA-256 (what the plan pins).
    fn firmware(&self, version: &str, rollback: bool, wrap_key: &str) -> String {
        let dir = self.sandbox.root().join(version);
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("t4-app.img");
        std::fs::write(&image, format!("t4-app {version} ").repeat(4096)).unwrap();
        let encrypted = dir.join("t4-app.bin");
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        self.run(&[
            "artifact",
            "encrypt",
            &path(&image),
            "--out",
            &path(&encrypted),
            "--kms-key",
            wrap_key,
        ])
        .expect_code(0);
        let mut sign = vec![
            "artifact".to_owned(),
            "sign".into(),
            path(&encrypted),
            "--firmware".into(),
            "t4-app".into(),
            "--version".into(),
            version.into(),
            "--hardware".into(),
            "t4-rev-a".into(),
            "--hardware".into(),
            "t4-rev-b".into(),
            "--kms-key".into(),
            self.sign_alias.clone(),
            "--content-kms".into(),
        ];
        if rollback {
            sign.push("--rollback".into());
        }
        let sign: Vec<&str> = sign.iter().map(String::as_str).collect();
        self.run(&sign).expect_code(0);
        let prefix = if rollback {
            format!("s3://{}/thermostat-t4/{version}-rollback", self.bucket)
        } else {
            format!("s3://{}/thermostat-t4/{version}", self.bucket)
        };
        self.run(&[
            "artifact",
            "publish",
            &path(&encrypted),
            "--to",
            &prefix,
            "--kms-key",
            &self.sign_alias,
        ])
        .expect_code(0);
        let digest = Command::new("sha256sum").arg(&encrypted).output().unwrap();
        String::from_utf8_lossy(&digest.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }

    /// The example with this fleet's names and endpoints and its hours
    /// made seconds, signed by `alias`.
    fn adapted_text(&self, alias: &str) -> String {
        let example = std::fs::read_to_string(crate::repo_root().join(EXAMPLE)).unwrap();
        example
            .replace("acme-firmware-123456789012", &self.bucket)
            .replace("thermostat-t4-prod", &self.group)
            .replace("alias/thermostat-firmware-signing", alias)
            .replace(
                "9ff611fdfe80c80e27de89eb1a57e1c714ad2c306462fe20da716a52aec29a69",
                &self.digests.0,
            )
            .replace(
                "543feafad2239bb6e8a15ae31de5c5fad562832dac7b4a981892775d3b166eb5",
                &self.digests.1,
            )
            .replace("bakeTime: 12h", "bakeTime: 1s")
            .replace("interval: 5m", "interval: 1s")
            .replace("count: 6", "count: 2")
    }

    fn write_plan(&self, name: &str, text: &str) -> PathBuf {
        let plan = self.sandbox.root().join(name);
        std::fs::write(&plan, text).unwrap();
        plan
    }

    fn plan(&self) -> &str {
        self.plan.to_str().unwrap()
    }

    /// Starts the devices; they run until the returned guard is dropped.
    fn devices(&self, extra: &[&str]) -> Devices {
        let state = self.sandbox.root().join("devices.json");
        let stop = self.sandbox.root().join("devices.stop");
        let child = Command::new(crate::repo_root().join(".venv/bin/python"))
            .arg(crate::repo_root().join("tests/fleet/devices.py"))
            .args(["--iot", &self.iot, "--group", &self.group])
            .arg("--state")
            .arg(&state)
            .arg("--stop")
            .arg(&stop)
            .args(extra)
            .spawn()
            .expect("the device simulator starts");
        Devices { child, state, stop }
    }

    /// This fleet's deployctl jobs (the emulator's account is shared by
    /// the tests running beside this one, so there are many pages of
    /// them): those aimed at its devices.
    fn job_ids(&self) -> Vec<String> {
        let out = self.iot_python(&format!(
            "ids = []\n\
for job in (j for page in iot.get_paginator('list_jobs').paginate() for j in page['jobs']):\n\
\x20   target = iot.describe_job(jobId=job['jobId'])['job']['targets'][0].rpartition('/')[2]\n\
\x20   things = iot.list_things_in_thing_group(thingGroupName=target)['things']\n\
\x20   if job['jobId'].startswith('deployctl-') and any(t.startswith('{group}-') for t in things): ids.append(job['jobId'])\n\
print(json.dumps(sorted(ids)))",
            group = self.group
        ));
        serde_json::from_str(&out).unwrap()
    }
}

/// The example without its half-fleet sign-off (the tests of waves that
/// are not about approvals run unattended).
fn without_signoff(text: String) -> String {
    let mut text = text.replace("          approval: half-fleet-signoff\n", "");
    let start = text
        .find("\napprovals:\n")
        .expect("the example's approvals");
    let end = text[start + 1..]
        .find("\nrollback:")
        .expect("the rollback section")
        + start
        + 1;
    text.replace_range(start..end, "");
    text
}

struct Devices {
    child: Child,
    state: PathBuf,
    stop: PathBuf,
}

impl Devices {
    fn state(&self) -> serde_json::Value {
        std::fs::read_to_string(&self.state)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Every device's installed version, once all agree with `wanted`.
    fn wait_all_on(&self, wanted: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("every device on {wanted}"),
            || {
                let state = self.state();
                state["installed"]
                    .as_object()
                    .is_some_and(|all| !all.is_empty() && all.values().all(|v| v == wanted))
            },
        );
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, "");
        let _ = self.child.wait();
    }
}

#[test]
fn the_example_runs_four_waves_to_the_whole_fleet() {
    let Some(fleet) = Fleet::new("waves", 40) else {
        return;
    };
    let devices = fleet.devices(&[]);
    let applied = fleet.run(&["apply", fleet.plan(), "--yes"]);
    applied.expect_code(0);
    devices.wait_all_on("4.2.0");
    let jobs = fleet.job_ids();
    assert_eq!(jobs.len(), 4, "one job per wave: {jobs:?}");
    // Every device got exactly one update, from exactly one wave.
    let state = devices.state();
    for (thing, history) in state["history"].as_object().unwrap() {
        let updates: Vec<&serde_json::Value> = history.as_array().unwrap().iter().collect();
        assert_eq!(updates.len(), 1, "{thing}: {updates:?}");
        assert_eq!(updates[0]["status"], "SUCCEEDED");
    }
    // The trail names the verified manifests and their KMS signer.
    let trail = fleet.run(&[
        "--output",
        "json",
        "audit",
        "show",
        "--action",
        "artifact.verified",
    ]);
    trail.expect_code(0);
    assert!(
        trail.stdout.contains("manifest sha256:") && trail.stdout.contains("arn:aws:kms:"),
        "{}",
        trail.stdout
    );
    fleet.run(&["audit", "verify"]).expect_code(0);
}

#[test]
fn a_bad_image_fails_its_wave_and_the_devices_that_took_it_go_back() {
    let Some(fleet) = Fleet::new("bad", 40) else {
        return;
    };
    // The first device to install 4.2.0 is fine; every later one fails its
    // self-test: wave 1 passes, wave 2 fails.
    let devices = fleet.devices(&[
        "--fail-version",
        "4.2.0",
        "--fail-percent",
        "100",
        "--lucky",
        "1",
    ]);
    let applied = fleet.run(&["apply", fleet.plan(), "--yes"]);
    applied.expect_code(1);
    devices.wait_all_on("4.1.3");
    let state = devices.state();
    let took: Vec<(&String, &serde_json::Value)> = state["history"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, h)| {
            h.as_array()
                .unwrap()
                .iter()
                .any(|u| u["version"] == "4.2.0" && u["status"] == "SUCCEEDED")
        })
        .collect();
    assert_eq!(took.len(), 1, "{state:#}");
    let (thing, history) = took[0];
    let back = history.as_array().unwrap().last().unwrap();
    assert!(
        back["version"] == "4.1.3"
            && back["status"] == "SUCCEEDED"
            && back["job"].as_str().unwrap().ends_with("-rollback"),
        "{thing}: {history:?}"
    );
    // Nobody else was sent the rollback; the later waves never started.
    let rollback_receivers = state["history"]
        .as_object()
        .unwrap()
        .values()
        .filter(|h| {
            h.as_array()
                .unwrap()
                .iter()
                .any(|u| u["job"].as_str().is_some_and(|j| j.ends_with("-rollback")))
        })
        .count();
    assert_eq!(rollback_receivers, 1);
    let jobs = fleet.job_ids();
    assert!(
        jobs.iter()
            .all(|j| !j.ends_with("-w3") && !j.ends_with("-w4")),
        "{jobs:?}"
    );
}

#[test]
fn a_manifest_that_does_not_verify_starts_no_wave() {
    let Some(fleet) = Fleet::new("tampered", 6) else {
        return;
    };
    // The plan trusts another KMS key than the one that signed.
    let text = std::fs::read_to_string(fleet.plan())
        .unwrap()
        .replace(&fleet.sign_alias, &format!("{}-other", fleet.sign_alias));
    std::fs::write(fleet.plan(), text).unwrap();
    let applied = fleet.run(&["apply", fleet.plan(), "--yes"]);
    applied.expect_code(2);
    assert!(
        applied.stderr.contains("signature does not verify"),
        "{applied}"
    );
    assert!(fleet.job_ids().is_empty());
    let history = fleet.run(&["--output", "json", "history"]);
    assert!(
        !history.stdout.contains("\"runId\""),
        "a refused run was recorded: {history}"
    );
}

impl Fleet {
    fn spawn(&self, args: &[&str]) -> crate::sandbox::Running {
        self.sandbox.spawn_command(self.command(args), args, None)
    }

    /// The members of one of this fleet's wave groups.
    fn members(&self, group: &str) -> Vec<String> {
        let out = self.iot_python(&format!(
            "print(json.dumps(sorted(iot.list_things_in_thing_group(thingGroupName='{group}', maxResults=250)['things'])))"
        ));
        serde_json::from_str(&out).unwrap()
    }

    fn wait_for_job(&self, suffix: &str) -> String {
        let mut found = String::new();
        wait_until(
            Duration::from_secs(60),
            &format!("a job ending {suffix}"),
            || match self.job_ids().into_iter().find(|j| j.ends_with(suffix)) {
                Some(job) => {
                    found = job;
                    true
                }
                None => false,
            },
        );
        found
    }
}

/// Every (device, version) install the devices reported SUCCEEDED.
fn installs(state: &serde_json::Value, version: &str) -> Vec<String> {
    let mut out: Vec<String> = state["history"]
        .as_object()
        .map(|all| {
            all.iter()
                .filter(|(_, h)| {
                    h.as_array()
                        .unwrap()
                        .iter()
                        .any(|u| u["version"] == version && u["status"] == "SUCCEEDED")
                })
                .map(|(thing, _)| thing.clone())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn kill_mid_wave_stops_dispatch_before_it_returns_and_sends_the_updated_devices_back() {
    let Some(fleet) = Fleet::new("kill", 40) else {
        return;
    };
    // Slow devices, so the kill lands while wave 3 is being installed.
    let devices = fleet.devices(&["--interval", "0.4"]);
    let running = fleet.spawn(&["apply", fleet.plan(), "--yes"]);
    fleet.wait_for_job("-w3");
    let run = crate::sandbox::started_run_id(&running.stderr_so_far());
    let killed = fleet.run(&["kill", &run, "--yes"]);
    killed.expect_code(0);
    // From here on no device may install 4.2.0.
    let returned = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let applied = running.wait(COMMAND_TIMEOUT);
    assert_ne!(applied.code, Some(0), "{applied}");
    std::thread::sleep(Duration::from_secs(2));
    let state = devices.state();
    let late: Vec<&serde_json::Value> = state["history"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|h| h.as_array().unwrap())
        .filter(|u| {
            u["version"] == "4.2.0"
                && u["status"] == "SUCCEEDED"
                && u["at"].as_f64().unwrap() > returned
        })
        .collect();
    assert!(
        late.is_empty(),
        "devices installed 4.2.0 after `kill` returned: {late:?}"
    );
    assert!(
        !installs(&state, "4.2.0").is_empty(),
        "the kill landed before any device updated"
    );
    devices.wait_all_on("4.1.3");
    assert!(
        !fleet.job_ids().iter().any(|j| j.ends_with("-w4")),
        "wave 4 started after the kill"
    );
    let trail = fleet.run(&["audit", "show", "--action", "kill.requested"]);
    assert!(trail.stdout.contains("kill.requested"), "{trail}");
}

#[test]
fn a_sigkilled_run_resumes_with_the_same_devices_in_each_wave() {
    let Some(fleet) = Fleet::new("resume", 30) else {
        return;
    };
    let devices = fleet.devices(&["--interval", "0.3"]);
    let running = fleet.spawn(&["apply", fleet.plan(), "--yes"]);
    let wave2 = fleet.wait_for_job("-w2");
    let run = crate::sandbox::started_run_id(&running.stderr_so_far());
    let so_far = running.stderr_so_far();
    assert!(
        !running.sigkill(),
        "the run ended before the SIGKILL:\n{so_far}"
    );
    let wave1 = wave2.replace("-w2", "-w1");
    let before = (fleet.members(&wave1), fleet.members(&wave2));
    let resumed = fleet.run(&["resume", &run, "--yes"]);
    resumed.expect_code(0);
    devices.wait_all_on("4.2.0");
    assert_eq!(
        (fleet.members(&wave1), fleet.members(&wave2)),
        before,
        "a resumed run re-chose devices"
    );
    let mut all: Vec<String> = ["-w1", "-w2", "-w3", "-w4"]
        .iter()
        .flat_map(|w| fleet.members(&wave2.replace("-w2", w)))
        .collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        (all.len(), total),
        (30, 30),
        "every device in exactly one wave"
    );
    for (thing, history) in devices.state()["history"].as_object().unwrap() {
        let updates = history
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["version"] == "4.2.0")
            .count();
        assert_eq!(updates, 1, "{thing} updated {updates} times");
    }
}

#[test]
fn kill_fleet_stops_every_run_on_the_group_without_a_run_id() {
    let Some(fleet) = Fleet::new("killfleet", 20) else {
        return;
    };
    let devices = fleet.devices(&["--interval", "0.3"]);
    let nothing = fleet.run(&[
        "kill",
        "--fleet",
        &format!("{}-nobody", fleet.group),
        "--yes",
    ]);
    nothing.expect_code(2);
    assert!(nothing.stderr.contains("no run in flight"), "{nothing}");
    let running = fleet.spawn(&["apply", fleet.plan(), "--yes"]);
    fleet.wait_for_job("-w2");
    let killed = fleet.run(&["kill", "--fleet", &fleet.group, "--yes"]);
    killed.expect_code(0);
    assert!(
        killed.stderr.contains("Killing 1 run updating thing group"),
        "{killed}"
    );
    let applied = running.wait(COMMAND_TIMEOUT);
    assert_ne!(applied.code, Some(0), "{applied}");
    devices.wait_all_on("4.1.3");
    let jobs = fleet.job_ids();
    assert!(
        !jobs
            .iter()
            .any(|j| j.ends_with("-w3") || j.ends_with("-w4")),
        "{jobs:?}"
    );
}

#[test]
fn a_device_joining_after_the_last_wave_gets_the_release_through_the_continuous_job() {
    let Some(fleet) = Fleet::new("late", 10) else {
        return;
    };
    let text = std::fs::read_to_string(fleet.plan()).unwrap().replace(
        "      downloadRole: arn:aws:iam::123456789012:role/thermostat-firmware-download\n",
        "      downloadRole: arn:aws:iam::123456789012:role/thermostat-firmware-download\n      continuous: true\n",
    );
    assert!(text.contains("continuous: true"));
    std::fs::write(fleet.plan(), text).unwrap();
    let devices = fleet.devices(&["--interval", "0.2"]);
    fleet.run(&["apply", fleet.plan(), "--yes"]).expect_code(0);
    devices.wait_all_on("4.2.0");
    let late = format!("{}-dev-late", fleet.group);
    fleet.iot_python(&format!(
        "iot.create_thing(thingName='{late}', thingTypeName='t4-rev-a'); iot.add_thing_to_thing_group(thingGroupName='{group}', thingName='{late}')",
        group = fleet.group
    ));
    wait_until(Duration::from_secs(30), "the late joiner on 4.2.0", || {
        devices.state()["installed"][late.as_str()] == "4.2.0"
    });
    let state = devices.state();
    let updates = state["history"][late.as_str()].as_array().unwrap();
    assert!(
        updates
            .iter()
            .any(|u| u["status"] == "SUCCEEDED"
                && u["job"].as_str().unwrap().ends_with("-continuous")),
        "{updates:?}"
    );
    let jobs = fleet.job_ids();
    assert!(jobs.iter().any(|j| j.ends_with("-continuous")), "{jobs:?}");
}

const SIGNOFF_ACCESS: &str = "apiVersion: deployctl.io/v1
kind: Access
users:
  deployctl-test: {roles: [operator, auditor]}
  bob: {roles: [approver]}
  carol: {roles: [approver]}
environments:
  production:
    operators: [deployctl-test]
    approverRole: firmware-release-manager
    auditors: [deployctl-test]
roles:
  firmware-release-manager: [bob, carol]
";

#[test]
fn the_half_fleet_signoff_holds_wave_three_until_two_release_managers_approve() {
    let Some(fleet) = Fleet::new("signoff", 20) else {
        return;
    };
    let plan = fleet.write_plan("signoff.yaml", &fleet.adapted_text(&fleet.sign_alias));
    let plan = plan.to_str().unwrap();
    let access = fleet.sandbox.root().join("access.yaml");
    std::fs::write(&access, SIGNOFF_ACCESS).unwrap();
    let access = access.to_str().unwrap();
    let bob = crate::approvals::enroll_with(&fleet.sandbox, access, "bob");
    let carol = crate::approvals::enroll_with(&fleet.sandbox, access, "carol");
    let devices = fleet.devices(&["--interval", "0.2"]);
    let args = ["--access", access, "apply", plan, "--yes"];
    let running = fleet
        .sandbox
        .spawn_command(fleet.command(&args), &args, None);

    let mut run = String::new();
    wait_until(
        Duration::from_secs(60),
        "the run waits for the sign-off",
        || {
            run = fleet.sandbox.run_ids().pop().unwrap_or_default();
            !run.is_empty() && fleet.sandbox.status(Some(&run))["stages"][0]["phase"] == "Paused"
        },
    );
    let status = fleet.run(&["--access", access, "status", "--output", "json", &run]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("JSON");
    let waiting = &status["stages"][0]["now"]["waitingFor"];
    assert_eq!(waiting["approval"], "half-fleet-signoff", "{status:#}");
    assert_eq!(waiting["required"], 2, "{status:#}");
    // Held: the first two waves (1 % and 9 %: 1 and 2 of 20 devices) and
    // nothing of wave 3, however long the sign-off takes.
    std::thread::sleep(Duration::from_secs(2));
    let jobs = fleet.job_ids();
    assert_eq!(
        jobs.len(),
        2,
        "only waves 1 and 2 before the sign-off: {jobs:?}"
    );
    assert!(
        jobs.iter()
            .all(|j| j.ends_with("-w1") || j.ends_with("-w2")),
        "{jobs:?}"
    );
    wait_until(Duration::from_secs(30), "waves 1 and 2 installed", || {
        installs(&devices.state(), "4.2.0").len() == 3
    });

    let approve = |user: &str, totp: &totp_rs::Totp| {
        fleet.run(&[
            "--access",
            access,
            "approve",
            &run,
            "--gate",
            "half-fleet-signoff",
            "--user",
            user,
            "--code",
            &crate::approvals::next_code(totp),
        ])
    };
    approve("bob", &bob).expect_code(0);
    // One of two: still held.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fleet.job_ids().len(), 2);
    approve("carol", &carol).expect_code(0);

    let applied = running.wait(COMMAND_TIMEOUT);
    applied.expect_code(0);
    devices.wait_all_on("4.2.0");
    assert_eq!(fleet.job_ids().len(), 4);
    let trail = fleet.run(&[
        "--access",
        access,
        "--output",
        "json",
        "audit",
        "show",
        "--action",
        "approval.granted",
    ]);
    trail.expect_code(0);
    assert!(
        trail.stdout.contains("bob") && trail.stdout.contains("carol"),
        "{}",
        trail.stdout
    );
}

/// A fleet selected by a fleet-index query: deployctl makes the query's
/// dynamic thing group at preflight and releases to what it matches
/// alone; with `continuous: true`, a device that starts matching after
/// the last wave is sent the release, one that does not match is not.
#[test]
fn a_fleet_index_query_releases_to_the_devices_it_matches_and_later_ones() {
    let Some(fleet) = Fleet::new("query", 40) else {
        return;
    };
    let query = format!("thingTypeName:t4-rev-a AND thingName:{}-dev-*", fleet.group);
    let text = std::fs::read_to_string(fleet.plan()).unwrap().replace(
        &format!("      thingGroups:\n        - {}\n", fleet.group),
        &format!("      query: \"{query}\"\n      continuous: true\n"),
    );
    assert!(text.contains("query:"), "the plan selects by query");
    std::fs::write(fleet.plan(), text).unwrap();
    let validated = fleet.run(&["validate", fleet.plan()]);
    validated.expect_code(0);
    assert!(!validated.stderr.contains("not supported"), "{validated}");

    let devices = fleet.devices(&["--interval", "0.2"]);
    fleet.run(&["apply", fleet.plan(), "--yes"]).expect_code(0);
    let on = |version: &str| installs(&devices.state(), version);
    wait_until(
        Duration::from_secs(30),
        "every rev-a device on 4.2.0",
        || on("4.2.0").len() == 20,
    );
    let state = devices.state();
    for (thing, history) in state["history"].as_object().unwrap() {
        let index: u32 = thing.rsplit('-').next().unwrap().parse().unwrap();
        let updates = history.as_array().unwrap();
        // Devices with an odd index are rev-a (the fixture's rule): their
        // wave sent them the release (the continuous job then finds them
        // on it already); rev-b devices were sent nothing.
        if index % 2 == 1 {
            assert!(
                !updates.is_empty()
                    && updates
                        .iter()
                        .all(|u| u["version"] == "4.2.0" && u["status"] == "SUCCEEDED"),
                "{thing}: {updates:?}"
            );
        } else {
            assert!(updates.is_empty(), "{thing}: {updates:?}");
        }
    }

    // Later: a rev-a device matches the query, a rev-b one does not.
    let (late_a, late_b) = (
        format!("{}-dev-late-a", fleet.group),
        format!("{}-dev-late-b", fleet.group),
    );
    fleet.iot_python(&format!(
        "iot.create_thing(thingName='{late_a}', thingTypeName='t4-rev-a'); iot.add_thing_to_thing_group(thingGroupName='{group}', thingName='{late_a}')\n\
iot.create_thing(thingName='{late_b}', thingTypeName='t4-rev-b'); iot.add_thing_to_thing_group(thingGroupName='{group}', thingName='{late_b}')",
        group = fleet.group
    ));
    wait_until(
        Duration::from_secs(30),
        "the late rev-a device on 4.2.0",
        || devices.state()["installed"][late_a.as_str()] == "4.2.0",
    );
    std::thread::sleep(Duration::from_secs(1));
    let state = devices.state();
    assert_eq!(
        state["history"][late_b.as_str()].as_array().map(Vec::len),
        Some(0),
        "the query does not match the rev-b device: {state}"
    );
    // The selector is deployctl's dynamic group, named by the query.
    let described = fleet.iot_python(&format!(
        "import hashlib\n\
name = 'deployctl-query-' + hashlib.sha256('{query}'.encode()).hexdigest()[:24]\n\
print(iot.describe_thing_group(thingGroupName=name)['queryString'])"
    ));
    assert_eq!(described.trim(), query);
}

/// Two real device agent processes (the `ota-agent` binary) among 18
/// reference agents run in-process (`ota-fleet`), in a fleet run driven by
/// `deployctl apply`:
/// each takes its wave's job from the IoT Jobs data plane, downloads over
/// presigned HTTPS, verifies the manifest against the KMS signing key's
/// public half, decrypts with KMS, writes its inactive slot, self-tests
/// and reports SUCCEEDED, and the run's gates count them with the rest.
#[test]
fn real_device_agents_in_a_fleet_run_verify_install_and_report() {
    let Some(fleet) = Fleet::new("agents", 20) else {
        return;
    };
    let test = "fleet_e2e::real_device_agents_in_a_fleet_run_verify_install_and_report";
    let Some(ca) = test_ca(test) else {
        return;
    };
    let agent_bin = example_binary("ota-agent");
    let pem = fleet.signing_public_key();
    let real: Vec<String> = [1, 3]
        .iter()
        .map(|i| format!("{}-dev-{i:04}", fleet.group))
        .collect();
    let agents: Vec<(Child, PathBuf)> = real
        .iter()
        .map(|thing| {
            let out = fleet.sandbox.root().join(format!("{thing}.out"));
            let child = Command::new(&agent_bin)
                .args([
                    "--thing",
                    thing,
                    "--firmware",
                    "t4-app",
                    "--hardware",
                    "t4-rev-a",
                ])
                .arg("--state")
                .arg(fleet.sandbox.root().join(format!("{thing}.slots")))
                .args([
                    "--factory-version",
                    "4.1.3",
                    "--content-kms",
                    "--poll",
                    "0.2",
                ])
                .args(["--endpoint", &fleet.iot])
                .arg("--public-key")
                .arg(&pem)
                .arg("--ca")
                .arg(&ca)
                .env("AWS_ENDPOINT_URL", &fleet.moto)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env_remove("AWS_PROFILE")
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
                .spawn()
                .expect("the agent starts");
            (child, out)
        })
        .collect();
    // The rest of the fleet: reference agents in one process.
    let rest: Vec<String> = (0..20)
        .map(|i| format!("{}-dev-{i:04}", fleet.group))
        .filter(|thing| !real.contains(thing))
        .collect();
    let devices = fleet.agent_fleet(&ca, &rest, &[]);
    let applied = fleet.run(&["apply", fleet.plan(), "--yes"]);
    let mut reports = Vec::new();
    for (mut child, out) in agents {
        let _ = child.kill();
        let _ = child.wait();
        let lines = std::fs::read_to_string(&out).unwrap_or_default();
        let errors = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
        reports.push((lines, errors));
    }
    applied.expect_code(0);
    for ((lines, errors), thing) in reports.iter().zip(&real) {
        let outcomes: Vec<serde_json::Value> = lines
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        assert!(
            outcomes
                .iter()
                .any(|o| o["outcome"] == "succeeded" && o["running"] == "4.2.0"),
            "{thing} did not install 4.2.0: {lines}{errors}"
        );
    }
    // The in-process rest of the fleet got it too; the real agents' things
    // were theirs alone.
    let state = devices.state();
    assert_eq!(installs(&state, "4.2.0").len(), 18, "{state}");
    for thing in &real {
        assert!(
            state["history"].get(thing.as_str()).is_none(),
            "{thing} was played in-process too"
        );
    }
}

/// A 24-device fleet for reference agents, the test CA their downloads
/// trust, and the devices' names (skips without the emulators or the CA).
fn agent_fleet_of_24(test: &str, label: &str) -> Option<(Fleet, String, Vec<String>)> {
    let fleet = Fleet::new(label, 24)?;
    let ca = test_ca(test)?;
    let things = (0..24)
        .map(|i| format!("{}-dev-{i:04}", fleet.group))
        .collect();
    Some((fleet, ca, things))
}

/// The test CA the emulator's download server uses (skips without it).
fn test_ca(test: &str) -> Option<String> {
    crate::emulators::urls(test, ["DEPLOYCTL_TEST_TLS_CA"]).map(|[ca]| ca)
}

/// A binary of `examples/ota-agent`, built beside deployctl's by the
/// workspace's test build.
fn example_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_deployctl")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (`cargo test --workspace` does)",
        path.display()
    );
    path
}

impl Fleet {
    /// The KMS signing key's public half as PEM, what a device trusts.
    fn signing_public_key(&self) -> PathBuf {
        let public_key = self.moto_python(&format!(
            "import base64\n\
der = kms.get_public_key(KeyId='{alias}')['PublicKey']\n\
text = base64.b64encode(der).decode()\n\
print('-----BEGIN PUBLIC KEY-----')\n\
for i in range(0, len(text), 64): print(text[i:i + 64])\n\
print('-----END PUBLIC KEY-----')",
            alias = self.sign_alias
        ));
        let pem = self.sandbox.root().join("firmware.pub");
        std::fs::write(&pem, public_key.trim_start()).unwrap();
        pem
    }

    /// `things` played by reference agents in one process (`ota-fleet`),
    /// until the returned guard is dropped.
    fn agent_fleet(&self, ca: &str, things: &[String], extra: &[&str]) -> Devices {
        let list = self.sandbox.root().join("agents.txt");
        std::fs::write(&list, things.join("\n")).unwrap();
        let state = self.sandbox.root().join("agents.json");
        let stop = self.sandbox.root().join("agents.stop");
        let child = Command::new(example_binary("ota-fleet"))
            .arg("--things")
            .arg(&list)
            .arg("--slots")
            .arg(self.sandbox.root().join("slots"))
            .arg("--state")
            .arg(&state)
            .arg("--stop")
            .arg(&stop)
            .args(["--firmware", "t4-app", "--hardware", "t4-rev-a"])
            .args(["--factory-version", "4.1.3", "--content-kms"])
            .args(["--endpoint", &self.iot, "--ca", ca])
            .arg("--public-key")
            .arg(self.signing_public_key())
            .args(extra)
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the agent fleet starts");
        Devices { child, state, stop }
    }
}

/// The example on a fleet of reference agents in one process (the same
/// `Agent` the device binary runs), a quarter of them slow and a quarter
/// flapping offline and back: every device verifies, decrypts, installs
/// and runs 4.2.0, each from exactly one wave.
#[test]
fn the_example_runs_on_reference_agents_some_slow_some_flapping() {
    let Some((fleet, ca, things)) = agent_fleet_of_24(
        "fleet_e2e::the_example_runs_on_reference_agents_some_slow_some_flapping",
        "agentfleet",
    ) else {
        return;
    };
    let devices = fleet.agent_fleet(
        &ca,
        &things,
        &[
            "--slow-percent",
            "25",
            "--slow-seconds",
            "0.5",
            "--flap-percent",
            "25",
        ],
    );
    fleet.run(&["apply", fleet.plan(), "--yes"]).expect_code(0);
    devices.wait_all_on("4.2.0");
    let state = devices.state();
    for thing in &things {
        let updates = state["history"][thing.as_str()]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(updates.len(), 1, "{thing}: {updates:?}");
        assert_eq!(
            (
                updates[0]["status"].as_str(),
                updates[0]["version"].as_str()
            ),
            (Some("SUCCEEDED"), Some("4.2.0")),
            "{thing}"
        );
    }
}

/// A bad image on reference agents: half of them fail 4.2.0's self-test
/// and boot their old slot again; the failing wave stops the run, and
/// every agent that had installed 4.2.0 is sent the signed 4.1.3 rollback
/// manifest and installs it (a downgrade only a signed rollback allows).
/// Every device ends on 4.1.3, whichever wave the seeded choice failed.
#[test]
fn reference_agents_that_fail_the_self_test_fall_back_and_the_rest_get_the_rollback() {
    let Some((fleet, ca, things)) = agent_fleet_of_24(
        "fleet_e2e::reference_agents_that_fail_the_self_test_fall_back_and_the_rest_get_the_rollback",
        "agentbad",
    ) else {
        return;
    };
    let devices = fleet.agent_fleet(
        &ca,
        &things,
        &["--fail-version", "4.2.0", "--fail-percent", "50"],
    );
    fleet.run(&["apply", fleet.plan(), "--yes"]).expect_code(1);
    devices.wait_all_on("4.1.3");
    let state = devices.state();
    let mut failed = 0;
    for thing in &things {
        let updates = state["history"][thing.as_str()]
            .as_array()
            .cloned()
            .unwrap_or_default();
        failed += updates.iter().filter(|u| u["status"] == "FAILED").count();
        let took = updates
            .iter()
            .position(|u| u["status"] == "SUCCEEDED" && u["version"] == "4.2.0");
        if let Some(at) = took {
            assert!(
                updates[at + 1..].iter().any(|u| u["status"] == "SUCCEEDED"
                    && u["version"] == "4.1.3"
                    && u["job"].as_str().is_some_and(|j| j.ends_with("-rollback"))),
                "{thing} took 4.2.0 and was not rolled back: {updates:?}"
            );
        }
    }
    assert!(failed > 0, "some agent failed its self-test: {state}");
}

/// Devices that stay offline: a wave waits for them only until the
/// device timeout, then counts them against its success threshold (or,
/// when none of the wave's devices answers, the fleet gate fails for want
/// of data), so the wave holding one fails, the run rolls back (exit 1)
/// and every device that had installed 4.2.0 is sent the signed rollback.
/// The offline devices were never sent anything they could act on.
#[test]
fn offline_agents_count_against_their_wave_after_the_device_timeout() {
    let test = "fleet_e2e::offline_agents_count_against_their_wave_after_the_device_timeout";
    let Some((fleet, ca, things)) = agent_fleet_of_24(test, "agentoff") else {
        return;
    };
    let text = std::fs::read_to_string(fleet.plan())
        .unwrap()
        .replace("deviceTimeout: 2h", "deviceTimeout: 5s");
    assert!(text.contains("deviceTimeout: 5s"));
    std::fs::write(fleet.plan(), text).unwrap();
    let devices = fleet.agent_fleet(
        &ca,
        &things,
        &["--offline-percent", "30", "--offline-seconds", "3600"],
    );
    let applied = fleet.run(&["apply", fleet.plan(), "--yes"]);
    applied.expect_code(1);
    // Failed by the device timeout (the silent devices count against the
    // success threshold), or sooner when every device of the wave is
    // silent and the fleet gate has no data to judge.
    assert!(
        applied.stderr.contains("still silent")
            || applied.stderr.contains("no device reported yet"),
        "{applied}"
    );
    let state = devices.state();
    let silent: Vec<&String> = things
        .iter()
        .filter(|t| {
            state["history"][t.as_str()]
                .as_array()
                .is_none_or(Vec::is_empty)
        })
        .collect();
    assert!(!silent.is_empty(), "some devices stayed offline: {state}");
    for thing in &things {
        let updates = state["history"][thing.as_str()]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Those that took 4.2.0 are sent back to 4.1.3.
        if updates
            .iter()
            .any(|u| u["status"] == "SUCCEEDED" && u["version"] == "4.2.0")
        {
            wait_until(Duration::from_secs(30), "the rollback installed", || {
                devices.state()["installed"][thing.as_str()] == "4.1.3"
            });
        }
    }
    for thing in &silent {
        assert_eq!(state["installed"][thing.as_str()], "4.1.3", "{thing}");
    }
}
